#!/usr/bin/env python3
"""Scaling across cores: ringsan with 1, 2, 4 and 8 reactors against tgtd, on a RAM-backed LUN.

A benchmark, not a test. Meant for a many-core machine with nothing installed (the device
machine lent to some sessions), so it runs from a self-contained bundle:

  perf/scale_cores.py bundle DIR      (here, as root, after `cargo build --release --bin ringsand`
                                      and ../shared/bench/fio-libiscsi --version): copies
                                      ringsand, fio with the libiscsi engine, tgtd and tgtadm and
                                      every shared library they load (the loader and libc too)
                                      into DIR, so they run on any x86-64 Linux
  perf/scale_cores.py agreement DIR OUT [--runtime 3] [--rounds 3] [--reactors 4]
                                      (there): perf/agreement.py, fio against ringsan-perf, with
                                      the clients pinned to the second half of the CPUs
  perf/scale_cores.py run DIR OUT [--runtime 8] [--rounds 2] [--counts 1,2,4,8]
                                      (there, as root): for each N in counts, ringsand with N
                                      reactors against N fio sessions (libiscsi engine, one
                                      session per fio job, QD32 each), and tgtd against the same N
                                      sessions; rounds interleave ringsan and tgtd. Writes
                                      OUT/scale.json and prints a markdown table.

Both targets serve a 1 GiB file on /dev/shm (tmpfs, filled with zeros first so every page
exists), both opened O_DIRECT (tmpfs accepts it since Linux 6.6). The targets are pinned to the
first half of the CPUs and fio to the second half, so the client never steals the target's
cores. The target's CPU time per I/O comes from /proc/PID/stat (utime + stime) read just before
fio starts and just after it exits, divided by the I/Os fio completed (no ramp, so every I/O in
the window is counted).
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, time

RS_IQN = "iqn.2026-11.io.ringsan:scale"
TGT_IQN = "iqn.2026-11.org.tgt:scale"
RS_PORT, TGT_PORT = 3460, 3461
TICK = os.sysconf("SC_CLK_TCK")


# ---- bundle (here) ---------------------------------------------------------------------------

def libs_of(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.append(parts[2])
        elif parts and parts[0].startswith("/"):
            found.append(parts[0])  # the loader
    return found


def bundle(a):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = os.environ.get("RINGSAN_BENCH_CACHE", "/var/cache/ringsan-bench")
    bins = {"ringsand": os.path.join(root, "target/release/ringsand"),
            "fio": os.path.join(cache, "fio-3.33/fio"),
            "ringsan-perf": os.path.join(root, "target/release/ringsan-perf"),
            "tgtd": shutil.which("tgtd") or "/usr/sbin/tgtd",
            "tgtadm": shutil.which("tgtadm") or "/usr/sbin/tgtadm"}
    os.makedirs(os.path.join(a.dir, "bin"), exist_ok=True)
    os.makedirs(os.path.join(a.dir, "lib"), exist_ok=True)
    for name, path in bins.items():
        if not os.path.exists(path):
            sys.exit("scale_cores: %s not found at %s" % (name, path))
        shutil.copy2(path, os.path.join(a.dir, "bin", name))
        for lib in libs_of(path):
            shutil.copy2(os.path.realpath(lib), os.path.join(a.dir, "lib", os.path.basename(lib)))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(a.dir) for f in fs)
    print("bundle %s: %d MiB" % (a.dir, total >> 20))


# ---- run (there) -----------------------------------------------------------------------------

class Bundle:
    def __init__(self, d):
        self.d = os.path.abspath(d)

    def cmd(self, name, *args):
        return [os.path.join(self.d, "lib", "ld-linux-x86-64.so.2"), "--library-path",
                os.path.join(self.d, "lib"), os.path.join(self.d, "bin", name), *args]


def pin(cpus):
    """taskset prefix, or nothing where taskset is missing (then nothing is pinned)."""
    return ["taskset", "-c", cpus] if shutil.which("taskset") else []


def cpus_halves():
    n = os.cpu_count() or 2
    half = max(1, n // 2)
    return "0-%d" % (half - 1), "%d-%d" % (half, n - 1), half


def wait_port(port, proc, seconds=20):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_ringsand(b, out, reactors, lun_file, target_cpus):
    conf = os.path.join(out, "ringsand-%d.toml" % reactors)
    with open(conf, "w") as f:
        f.write("""[daemon]
data_dir = "%s"
reactors = %d
buffer_size_kib = 256
buffer_count = 256
portals = ["127.0.0.1:%d"]
control_socket = "%s/ringsand.sock"

[[target]]
iqn = "%s"

[[target.lun]]
lun = 0
path = "%s"
size = "1G"
block_size = 512
write_cache = true
""" % (out, reactors, RS_PORT, out, RS_IQN, lun_file))
    log = open(os.path.join(out, "ringsand-%d.log" % reactors), "w")
    p = subprocess.Popen(pin(target_cpus) + b.cmd("ringsand", "--config", conf),
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if not wait_port(RS_PORT, p):
        stop(p)
        sys.exit("scale_cores: ringsand did not start:\n" + open(log.name).read()[-3000:])
    return p


def start_tgtd(b, out, lun_file, target_cpus):
    cport = str(TGT_PORT - 3000)
    log = open(os.path.join(out, "tgtd.log"), "w")
    p = subprocess.Popen(pin(target_cpus) +
                         b.cmd("tgtd", "-f", "-C", cport, "--iscsi", "portal=127.0.0.1:%d" % TGT_PORT),
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    adm = lambda *args: subprocess.run(b.cmd("tgtadm", "-C", cport, "--lld", "iscsi", *args),
                                       capture_output=True, text=True)
    for _ in range(100):
        if adm("--op", "show", "--mode", "sys").returncode == 0:
            break
        time.sleep(0.1)
    steps = [("--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN),
             ("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", lun_file,
              "--bsoflags", "direct"),
             ("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")]
    for s in steps:
        r = adm(*s)
        if r.returncode != 0:
            stop(p)
            sys.exit("scale_cores: tgtadm %s failed: %s" % (" ".join(s), r.stderr))
    if not wait_port(TGT_PORT, p):
        stop(p)
        sys.exit("scale_cores: tgtd did not listen:\n" + open(log.name).read()[-3000:])
    return p


def run_fio(b, url, sessions, job, runtime, client_cpus):
    bs, pattern, qd = job.split("-")
    args = pin(client_cpus) + b.cmd(
        "fio", "--name=" + job, "--ioengine=libiscsi", "--filename=" + url.replace(":", "\\:"),
        "--initiator=iqn.2026-11.org.bench:fio", "--rw=" + pattern, "--bs=" + bs,
        "--iodepth=" + qd[2:], "--numjobs=%d" % sessions, "--size=1g", "--time_based",
        "--runtime=%d" % runtime, "--lat_percentiles=1", "--percentile_list=50:99:99.9",
        "--output-format=json", "--group_reporting")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr[-1500:]}
    data = json.loads(r.stdout[r.stdout.index("{"):])
    j = data["jobs"][0]
    side = j["read"] if "read" in pattern else j["write"]
    pct = side["lat_ns"].get("percentile", {})
    return {"iops": side["iops"], "ios": side["total_ios"],
            "p50": pct.get("50.000000", 0) / 1000.0, "p99": pct.get("99.000000", 0) / 1000.0,
            "p99.9": pct.get("99.900000", 0) / 1000.0}


def measure(b, url, pid, sessions, job, runtime, client_cpus):
    t0, w0 = cpu_ticks(pid), time.monotonic()
    s = run_fio(b, url, sessions, job, runtime, client_cpus)
    t1, w1 = cpu_ticks(pid), time.monotonic()
    if "error" not in s:
        cpu_s = (t1 - t0) / TICK
        s["target_cpu_s"] = cpu_s
        s["target_cores"] = cpu_s / (w1 - w0)
        s["target_cpu_us_per_io"] = cpu_s * 1e6 / s["ios"] if s["ios"] else None
    return s


def run(a):
    b = Bundle(a.dir)
    os.makedirs(a.out, exist_ok=True)
    target_cpus, client_cpus, half = cpus_halves()
    counts = [int(c) for c in a.counts.split(",") if int(c) <= half]
    jobs = a.jobs.split(",")
    machine = {"nproc": os.cpu_count(), "kernel": os.uname().release,
               "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                            if l.startswith("model name")), "?"),
               "target_cpus": target_cpus, "client_cpus": client_cpus,
               "pinned": bool(shutil.which("taskset"))}
    print("machine:", machine, flush=True)
    files = {}
    for name in ("ringsan", "tgtd"):
        path = "/dev/shm/scale-%s.img" % name
        subprocess.run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=1024", "status=none"],
                       check=True)
        files[name] = path
    tgtd = start_tgtd(b, a.out, files["tgtd"], target_cpus)
    tgt_url = "iscsi://127.0.0.1:%d/%s/1" % (TGT_PORT, TGT_IQN)
    rs_url = "iscsi://127.0.0.1:%d/%s/0" % (RS_PORT, RS_IQN)
    samples = []
    try:
        for rnd in range(a.rounds):
            for n in counts:
                rs = start_ringsand(b, a.out, n, files["ringsan"], target_cpus)
                try:
                    order = [("ringsan", rs_url, rs.pid), ("tgtd", tgt_url, tgtd.pid)]
                    if (rnd + n) % 2:
                        order.reverse()
                    for job in jobs:
                        for name, url, pid in order:
                            s = measure(b, url, pid, n, job, a.runtime, client_cpus)
                            s.update({"target": name, "n": n, "job": job, "round": rnd + 1})
                            samples.append(s)
                            print(json.dumps(s), flush=True)
                finally:
                    stop(rs)
    finally:
        stop(tgtd)
    result = {"machine": machine, "runtime": a.runtime, "rounds": a.rounds, "samples": samples}
    with open(os.path.join(a.out, "scale.json"), "w") as f:
        json.dump(result, f, indent=1)
    report(result)


def agreement(a):
    """fio against ringsan-perf (perf/agreement.py) with the client pinned away from the target,
    so neither client's CPU use can slow the target down."""
    b = Bundle(a.dir)
    os.makedirs(a.out, exist_ok=True)
    target_cpus, client_cpus, half = cpus_halves()
    files = {}
    for name in ("ringsan", "tgtd"):
        path = "/dev/shm/agree-%s.img" % name
        subprocess.run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=1024", "status=none"],
                       check=True)
        files[name] = path
    tgtd = start_tgtd(b, a.out, files["tgtd"], target_cpus)
    rs = start_ringsand(b, a.out, a.reactors, files["ringsan"], target_cpus)
    env = dict(os.environ)
    env["RINGSAN_FIO"] = " ".join(pin(client_cpus) + b.cmd("fio"))
    env["RINGSAN_PERF"] = " ".join(pin(client_cpus) + b.cmd("ringsan-perf"))
    try:
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "agreement.py"),
                        "--target", "ringsand=iscsi://127.0.0.1:%d/%s/0" % (RS_PORT, RS_IQN),
                        "--target", "tgtd=iscsi://127.0.0.1:%d/%s/1" % (TGT_PORT, TGT_IQN),
                        "--rounds", str(a.rounds), "--runtime", str(a.runtime),
                        "--json", os.path.join(a.out, "agreement.json")], env=env, check=True)
    finally:
        stop(rs)
        stop(tgtd)


def report(result):
    print("\n| job | N (reactors = sessions) | ringsan IOPS | tgtd IOPS | ratio | ringsan p99 us | "
          "tgtd p99 us | ringsan CPU us/IO | tgtd CPU us/IO | ringsan cores busy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = [s for s in result["samples"] if "error" not in s]
    for job in sorted({s["job"] for s in ok}):
        for n in sorted({s["n"] for s in ok}):
            med = {}
            for t in ("ringsan", "tgtd"):
                ss = [s for s in ok if s["job"] == job and s["n"] == n and s["target"] == t]
                if ss:
                    med[t] = {k: statistics.median(s[k] for s in ss)
                              for k in ("iops", "p99", "target_cpu_us_per_io", "target_cores")}
            if len(med) < 2:
                continue
            r, t = med["ringsan"], med["tgtd"]
            print("| %s | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.1f | %.1f | %.2f |" % (
                job, n, r["iops"], t["iops"], r["iops"] / t["iops"], r["p99"], t["p99"],
                r["target_cpu_us_per_io"], t["target_cpu_us_per_io"], r["target_cores"]))
    errors = [s for s in result["samples"] if "error" in s]
    for e in errors:
        print("error:", e["target"], e["n"], e["job"], e["error"][:300])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("bundle")
    pb.add_argument("dir")
    pr = sub.add_parser("run")
    pr.add_argument("dir")
    pr.add_argument("out")
    pr.add_argument("--runtime", type=int, default=8)
    pr.add_argument("--rounds", type=int, default=2)
    pr.add_argument("--counts", default="1,2,4,8")
    pr.add_argument("--jobs", default="4k-randread-qd32")
    pa = sub.add_parser("agreement")
    pa.add_argument("dir")
    pa.add_argument("out")
    pa.add_argument("--runtime", type=int, default=3)
    pa.add_argument("--rounds", type=int, default=3)
    pa.add_argument("--reactors", type=int, default=4)
    pp = sub.add_parser("report")
    pp.add_argument("json")
    a = p.parse_args()
    if a.cmd == "bundle":
        bundle(a)
    elif a.cmd == "run":
        run(a)
    elif a.cmd == "agreement":
        agreement(a)
    else:
        report(json.load(open(a.json)))


if __name__ == "__main__":
    main()
