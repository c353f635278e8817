#!/usr/bin/env python3
"""Runs ../shared/bench/compare unchanged (its fio jobs, its A B / B A interleaving, its medians),
and around every fio run also samples the CPU time of the two target daemons, so that the
results carry "CPU microseconds per I/O" for each side.

  bench_compare.py run --name NAME --a URL --b URL --pid-a PID --pid-b PID --out DIR
                       [--rounds 3] [--runtime 5] [--jobs 4k-randread-qd1,...]
  bench_compare.py report DIR NAME [NAME...]     markdown tables from DIR/NAME.json + DIR/NAME-cpu.json

How the CPU per I/O is computed: utime+stime of the whole daemon process (all threads,
/proc/PID/stat fields 14 and 15) is read just before fio starts and just after it exits. That
window holds fio's login, its ramp_time (2 s, which compare always uses) and the measured run
time, while fio's IOPS covers only the measured part, so the I/O count of the window is taken as
IOPS x (runtime + ramp). The few commands of login/logout are noise against thousands of I/Os.

Each sample also records the machine's other CPU use in the same window (all busy time in
/proc/stat minus the daemon's and fio's), to show when something else was running.
"""
import argparse, importlib.machinery, importlib.util, json, os, resource, statistics, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench"))
RAMP_S = 2  # compare.py's --ramp_time
TICK = os.sysconf("SC_CLK_TCK")


def load_compare():
    path = os.path.join(SHARED, "compare")
    loader = importlib.machinery.SourceFileLoader("shared_compare", path)
    spec = importlib.util.spec_from_loader("shared_compare", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def proc_cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of the whole line)


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # user..steal minus idle and iowait


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(a):
    compare = load_compare()
    original = compare.run_job
    calls = {}
    samples = []
    pids = {"A": a.pid_a, "B": a.pid_b}

    waited = [0.0]

    def wait_quiet():
        """Before each fio run: wait (bounded) until the rest of the machine is near idle."""
        while True:
            m0, t0 = machine_busy_ticks(), time.monotonic()
            time.sleep(0.5)
            busy = (machine_busy_ticks() - m0) / TICK / (time.monotonic() - t0)
            if busy < a.quiet_cores or waited[0] >= a.max_wait:
                return busy
            time.sleep(2)
            waited[0] += 2.5

    def instrumented(url, job, runtime, size):
        busy_before = wait_quiet()
        c = calls.get(job, 0)
        calls[job] = c + 1
        rnd, pos = divmod(c, 2)
        side = ("A", "B")[pos] if rnd % 2 == 0 else ("B", "A")[pos]
        pid = pids[side]
        t0, m0, f0, w0 = proc_cpu_ticks(pid), machine_busy_ticks(), children_cpu_s(), time.monotonic()
        res = original(url, job, runtime, size)
        t1, m1, f1, w1 = proc_cpu_ticks(pid), machine_busy_ticks(), children_cpu_s(), time.monotonic()
        target_s = (t1 - t0) / TICK
        fio_s = f1 - f0
        ios = res["iops"] * (runtime + RAMP_S)
        samples.append({"job": job, "side": side, "round": rnd + 1, "url": url, "pid": pid,
                        "iops": res["iops"], "p50": res.get("p50"), "p99": res.get("p99"),
                        "p99.9": res.get("p99.9"), "wall_s": round(w1 - w0, 2),
                        "target_cpu_s": target_s, "fio_cpu_s": round(fio_s, 2),
                        "other_cpu_s": round((m1 - m0) / TICK - target_s - fio_s, 2),
                        "target_cpu_us_per_io": target_s * 1e6 / ios if ios else None,
                        "load1": os.getloadavg()[0], "busy_cores_before": round(busy_before, 2)})
        s = samples[-1]
        print("  %-18s %s r%d  %8.0f IOPS  p99 %7.1f us  target CPU %5.1f us/IO  other CPU %.2f s"
              % (job, side, rnd + 1, s["iops"], s["p99"] or 0, s["target_cpu_us_per_io"] or 0,
                 s["other_cpu_s"]), file=sys.stderr, flush=True)
        return res

    compare.run_job = instrumented
    out_json = os.path.join(a.out, a.name + ".json")
    argv = ["compare", "--a", a.a, "--b", a.b, "--rounds", str(a.rounds), "--runtime", str(a.runtime),
            "--jobs", a.jobs, "--size", a.size, "--json", out_json]
    sys.argv = argv
    print("$ ../shared/bench/compare " + " ".join(argv[1:]), flush=True)
    compare.main()
    with open(os.path.join(a.out, a.name + "-cpu.json"), "w") as f:
        json.dump({"name": a.name, "a": a.a, "b": a.b, "pid_a": a.pid_a, "pid_b": a.pid_b,
                   "quiet_wait_s": waited[0], "samples": samples}, f, indent=1)
    print("(waited %.0f s in all for the machine to be quiet)" % waited[0], file=sys.stderr)


def fmt(v, digits=0):
    if v is None:
        return "-"
    return ("%." + str(digits) + "f") % v


def report(a):
    lines = []
    for name in a.names:
        with open(os.path.join(a.dir, name + ".json")) as f:
            cmp = json.load(f)
        with open(os.path.join(a.dir, name + "-cpu.json")) as f:
            cpu = json.load(f)
        lines.append("#### %s\n" % name)
        lines.append("A = `%s`, B = `%s`; %d rounds x %d s (+2 s ramp), medians of the rounds.\n"
                     % (cmp["a"], cmp["b"], cmp["rounds"], cmp["runtime"]))
        lines.append("| job | IOPS A | IOPS B | **A/B** | p50 A | p50 B | A/B | p99 A | p99 B | **A/B** "
                     "| p99.9 A | p99.9 B | A/B | CPU µs/IO A | CPU µs/IO B |")
        lines.append("|" + "---|" * 15)
        extra = ["", "| job | IOPS A min–max | IOPS B min–max | CPU µs/IO A (+ rest) | CPU µs/IO B (+ rest) "
                 "| rest of machine, cores (max) |", "|" + "---|" * 6]
        for job, r in cmp["jobs"].items():
            mA, mB, q = r["A"], r["B"], r["ratio_a_over_b"]
            cA = [s for s in cpu["samples"] if s["job"] == job and s["side"] == "A"]
            cB = [s for s in cpu["samples"] if s["job"] == job and s["side"] == "B"]
            med = lambda ss: statistics.median(s["target_cpu_us_per_io"] for s in ss) if ss else None
            rest = lambda ss: statistics.median(s["other_cpu_s"] * s["target_cpu_us_per_io"] / s["target_cpu_s"]
                                                if s["target_cpu_s"] else 0.0 for s in ss)
            rng = lambda ss: "%.0f–%.0f" % (min(s["iops"] for s in ss), max(s["iops"] for s in ss))
            other = max(s["other_cpu_s"] / s["wall_s"] for s in cA + cB)
            lines.append("| %s | %s | %s | **%.2f** | %s | %s | %.2f | %s | %s | **%.2f** | %s | %s | %.2f "
                         "| %s | %s |"
                         % (job, fmt(mA["iops"]), fmt(mB["iops"]), q["iops"], fmt(mA["p50"], 1),
                            fmt(mB["p50"], 1), q["p50"], fmt(mA["p99"], 1), fmt(mB["p99"], 1), q["p99"],
                            fmt(mA["p99.9"], 1), fmt(mB["p99.9"], 1), q["p99.9"], fmt(med(cA), 1),
                            fmt(med(cB), 1)))
            extra.append("| %s | %s | %s | %s (%+.1f) | %s (%+.1f) | %.2f |"
                         % (job, rng(cA), rng(cB), fmt(med(cA), 1), rest(cA), fmt(med(cB), 1),
                            rest(cB), other))
        lines.extend(extra)
        lines.append("")
        lines.append("CPU µs/IO: the daemon's utime+stime (all threads) per I/O. \"+ rest\": CPU used in the same "
                     "window by everything but this daemon and fio (kernel workers included), per I/O. "
                     "Rest of machine, cores: the most of it in any one sample (2 cores in all). Waited %.0f s "
                     "for quiet before runs." % cpu.get("quiet_wait_s", 0))
        lines.append("")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--name", required=True)
    r.add_argument("--a", required=True)
    r.add_argument("--b", required=True)
    r.add_argument("--pid-a", type=int, required=True)
    r.add_argument("--pid-b", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--runtime", type=int, default=5)
    r.add_argument("--quiet-cores", type=float, default=0.3,
                   help="before each fio run wait until the machine uses less than this many cores")
    r.add_argument("--max-wait", type=float, default=90, help="seconds of such waiting per comparison, at most")
    r.add_argument("--size", default="1g", help="region of the LUN the jobs touch (compare's --size)")
    r.add_argument("--jobs", default="4k-randread-qd1,4k-randread-qd32,4k-randwrite-qd1,4k-randwrite-qd32,128k-write-qd8")
    s = sub.add_parser("report")
    s.add_argument("dir")
    s.add_argument("names", nargs="+")
    a = p.parse_args()
    run(a) if a.cmd == "run" else report(a)


if __name__ == "__main__":
    main()
