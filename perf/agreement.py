#!/usr/bin/env python3
"""Do ringsan-perf and fio (libiscsi engine) measure the same thing? A benchmark, not a test.

  perf/agreement.py --target NAME=URL [--target NAME=URL ...] [--rounds 3] [--runtime 5]
                    [--jobs 4k-randread-qd1,4k-randread-qd32,4k-randwrite-qd1,4k-randwrite-qd32]

For every target and job it runs fio (../shared/bench/fio-libiscsi, the same options
../shared/bench/compare uses) and `ringsan-perf run` with the same workload, interleaved round by
round (fio first in even rounds, ringsan-perf first in odd ones), and records IOPS, p50 and the
client's own CPU time per I/O: the user+system time of the tool's process as the kernel counts
it for a finished child (getrusage RUSAGE_CHILDREN before and after, the same for both tools:
login, ramp and run), divided by IOPS x (ramp + runtime).

The rule: the two tools **agree** on a job when the median over the rounds of the per-round ratio
ringsan-perf / fio lies in [0.90, 1.10] for IOPS and in [0.85, 1.15] for p50 (p50 is a few
microseconds at QD1, where a one-microsecond difference in client overhead is already 5%).
ringsan-perf **keeps up** when its median IOPS is at least 0.97 of fio's (3%: below the noise of
this machine) and its median client CPU per I/O is at most fio's.
Prints a markdown table; `--json FILE` keeps every sample.
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Commands, overridable (split on spaces) to run from a bundle or pinned to some CPUs, e.g.
# RINGSAN_FIO="taskset -c 8-15 bundle/lib/ld-linux-x86-64.so.2 --library-path bundle/lib bundle/bin/fio"
FIO = os.environ.get("RINGSAN_FIO", os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "fio-libiscsi"))).split()
PERF = os.environ.get("RINGSAN_PERF", os.path.join(ROOT, "target", "release", "ringsan-perf")).split()
RAMP = 2
JOBS = "4k-randread-qd1,4k-randread-qd32,4k-randwrite-qd1,4k-randwrite-qd32"


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_per_io(cpu_s, iops, runtime):
    ios = iops * (runtime + RAMP)
    return cpu_s * 1e6 / ios if ios else None


def fio(url, job, runtime):
    bs, pattern, qd = job.split("-")
    args = FIO + ["--name=" + job, "--ioengine=libiscsi", "--filename=" + url.replace(":", "\\:"),
            "--initiator=iqn.2026-11.org.bench:fio", "--rw=" + pattern, "--bs=" + bs,
            "--iodepth=" + qd[2:], "--size=1g", "--time_based", "--runtime=%d" % runtime,
            "--ramp_time=%d" % RAMP, "--lat_percentiles=1", "--percentile_list=50",
            "--output-format=json"]
    before = children_cpu_s()
    out = subprocess.run(args, capture_output=True, text=True)
    cpu_s = children_cpu_s() - before
    if out.returncode != 0:
        sys.exit("agreement: fio failed on %s %s:\n%s" % (url, job, out.stderr[-2000:]))
    j = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]
    side = j["read"] if "read" in pattern else j["write"]
    return {"iops": side["iops"], "p50_us": side["lat_ns"]["percentile"]["50.000000"] / 1000.0,
            "cpu_us_per_io": cpu_per_io(cpu_s, side["iops"], runtime)}


def perf(url, job, runtime):
    bs, pattern, qd = job.split("-")
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        args = PERF + ["run", "--url", url, "--rw", pattern, "--bs", bs, "--iodepth", qd[2:],
                "--size", "1g", "--runtime", str(runtime), "--ramp", str(RAMP), "--quiet",
                "--initiator", "iqn.2026-11.org.bench:ringsan-perf", "--json", f.name]
        before = children_cpu_s()
        out = subprocess.run(args, capture_output=True, text=True)
        cpu_s = children_cpu_s() - before
        if out.returncode != 0:
            sys.exit("agreement: ringsan-perf failed on %s %s:\n%s" % (url, job, out.stderr[-2000:]))
        with open(f.name) as jf:
            r = json.load(jf)
    op = r["totals"]["read"] if "read" in pattern else r["totals"]["write"]
    return {"iops": op["iops"], "p50_us": op["latency"]["p50_ns"] / 1000.0,
            "cpu_us_per_io": cpu_per_io(cpu_s, op["iops"], runtime)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", required=True, help="NAME=URL")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runtime", type=int, default=5)
    p.add_argument("--jobs", default=JOBS)
    p.add_argument("--json")
    a = p.parse_args()
    targets = [t.split("=", 1) for t in a.target]
    samples = []
    for name, url in targets:
        for job in a.jobs.split(","):
            for r in range(a.rounds):
                order = [("fio", fio), ("ringsan-perf", perf)]
                if r % 2:
                    order.reverse()
                for tool, f in order:
                    s = f(url, job, a.runtime)
                    s.update({"target": name, "job": job, "tool": tool, "round": r + 1})
                    samples.append(s)
                    print(json.dumps(s), file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rounds": a.rounds, "runtime": a.runtime, "samples": samples}, f, indent=1)
    print("| target | job | IOPS fio | IOPS ringsan-perf | ratio | p50 µs fio | p50 µs ringsan-perf | ratio "
          "| agree | client CPU µs/IO fio | ringsan-perf | keeps up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, _ in targets:
        for job in a.jobs.split(","):
            pick = lambda tool, r: next(s for s in samples if s["target"] == name and s["job"] == job
                                        and s["tool"] == tool and s["round"] == r)
            rounds = range(1, a.rounds + 1)
            iops_ratio = statistics.median(pick("ringsan-perf", r)["iops"] / pick("fio", r)["iops"] for r in rounds)
            p50_ratio = statistics.median(pick("ringsan-perf", r)["p50_us"] / pick("fio", r)["p50_us"] for r in rounds)
            med = lambda tool, k: statistics.median(pick(tool, r)[k] for r in rounds)
            agree = 0.90 <= iops_ratio <= 1.10 and 0.85 <= p50_ratio <= 1.15
            keeps_up = med("ringsan-perf", "iops") >= 0.97 * med("fio", "iops") and \
                med("ringsan-perf", "cpu_us_per_io") <= med("fio", "cpu_us_per_io")
            print("| %s | %s | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | %s | %.1f | %.1f | %s |" % (
                name, job, med("fio", "iops"), med("ringsan-perf", "iops"), iops_ratio,
                med("fio", "p50_us"), med("ringsan-perf", "p50_us"), p50_ratio, "yes" if agree else "**no**",
                med("fio", "cpu_us_per_io"), med("ringsan-perf", "cpu_us_per_io"), "yes" if keeps_up else "**no**"))


if __name__ == "__main__":
    main()
