#!/usr/bin/env python3
"""bench_compare -- runs tools/bench (yoke) and tools/bench_torch.py
(PyTorch) benchmark by benchmark, interleaved, and prints a markdown table
of their times and ratios for each thread count (see tools/BENCH.md).

    python3 tools/bench_compare.py [--build build-bench] [--threads 1,2]
        [--reps N] [--quick] [--filter SUBSTR] [--json FILE]

One `--serve` process per tool and thread count stays up for the whole run
(PyTorch is imported once per thread count); each benchmark name is sent to
the four processes in turn -- yoke and PyTorch at T=1, then at T=2, the
order of the two tools alternating from one benchmark to the next -- so a
drift of the machine hits both tools alike. Only one benchmark runs at a
time. Before each one the driver waits (up to --max-wait seconds) until the
machine is quiet (less than --busy of the CPUs in use); it measures the
share of the CPUs that other processes took while the benchmark ran, reruns
a disturbed benchmark (--retries), keeps the least disturbed record
("others" in the JSON) and flags it in the table if it stayed disturbed.

The driver itself needs only the Python standard library; the PyTorch side
runs with --python (default /usr/bin/python3, where PyTorch 1.13 lives).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import yoke_cli

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version",
                   version=f"%(prog)s (yoke) {yoke_cli.version()}")
    p.add_argument("--build", default="build-bench",
                   help="meson build directory holding bench "
                   "(default build-bench; use a release build for timings)")
    p.add_argument("--threads", default="1,2",
                   help="comma-separated thread counts (default 1,2)")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions per benchmark (default: the "
                   "tools' own, 10)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (the tools' --quick), a smoke test")
    p.add_argument("--filter", default=None,
                   help="only the benchmarks whose name contains SUBSTR")
    p.add_argument("--python", default="/usr/bin/python3",
                   help="the Python with PyTorch (default /usr/bin/python3)")
    p.add_argument("--json", default=None,
                   help="also write every JSON record, one a line, to FILE")
    p.add_argument("--busy", type=float, default=0.15,
                   help="the machine counts as quiet when other processes "
                   "use less than this fraction of all CPUs (default 0.15)")
    p.add_argument("--retries", type=int, default=1,
                   help="reruns of a benchmark that other processes "
                   "disturbed (default 1)")
    p.add_argument("--patience", type=float, default=300.0,
                   help="seconds after which the driver stops waiting and "
                   "retrying and runs the rest as the machine is "
                   "(default 300)")
    p.add_argument("--max-wait", type=float, default=10.0,
                   help="seconds to wait for a quiet machine before each "
                   "benchmark (default 10; 0: never wait)")
    return p.parse_args()


# ------------------------------------------------------------ processes


def tool_commands(a, threads):
    """The yoke and PyTorch --serve command lines for a thread count."""
    common = ["--serve", "--threads", str(threads)]
    if a.quick:
        common.append("--quick")
    if a.reps:
        common += ["--reps", str(a.reps)]
    bench = os.path.join(ROOT, a.build, "bench")
    return {"yoke": [bench] + common,
            "torch": [a.python, os.path.join(HERE, "bench_torch.py")] +
            common}


def listed(cmd):
    """The benchmark names a tool lists (its --serve replaced by --list)."""
    out = subprocess.run([c for c in cmd if c != "--serve"] + ["--list"],
                         check=True, capture_output=True, text=True).stdout
    return [n for n in out.split("\n") if n]


def check_names(yoke, torch):
    """Both tools must list the same names, none inside another (the tools'
    --filter selects by substring)."""
    if yoke != torch:
        only = sorted(set(yoke) ^ set(torch))
        sys.exit("bench_compare: the tools list different benchmarks: %s"
                 % ", ".join(only))
    for n in yoke:
        inside = [m for m in yoke if m != n and n in m]
        if inside:
            sys.exit("bench_compare: benchmark name %r is inside %r"
                     % (n, inside[0]))


class Server:
    """A tool's --serve process: one name in, one JSON line out."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True,
                                  bufsize=1)

    def cpu_ticks(self):
        """CPU time of the process, all its threads, in clock ticks."""
        try:
            with open("/proc/%d/stat" % self.p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            return 0

    def run(self, name):
        """The tool's record, with "others": the share of all CPUs that
        other processes used while it ran."""
        total0, idle0 = cpu_times()
        own0 = self.cpu_ticks()
        try:
            self.p.stdin.write(name + "\n")
            self.p.stdin.flush()
            line = self.p.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            return {"name": name, "error": "the process ended (exit %s)"
                    % self.p.poll()}
        total1, idle1 = cpu_times()
        busy = (total1 - total0) - (idle1 - idle0)
        own = self.cpu_ticks() - own0
        r = json.loads(line)
        r["others"] = round(max(busy - own, 0) / max(total1 - total0, 1), 3)
        return r

    def close(self):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        self.p.wait()


# --------------------------------------------------------- a quiet machine


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return sum(v[:8]), idle


def busy_fraction(seconds=0.3):
    """The fraction of all CPUs busy over a short window (ours sleep)."""
    t0, i0 = cpu_times()
    time.sleep(seconds)
    t1, i1 = cpu_times()
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(a):
    """Waits until the machine is quiet or max_wait passed; the last load."""
    deadline = min(time.monotonic() + a.max_wait, a.deadline)
    while True:
        b = busy_fraction()
        if b < a.busy or time.monotonic() >= deadline:
            return b
        time.sleep(0.5)


def run_quietly(server, name, a):
    """Runs a benchmark on a quiet machine; reruns it (up to --retries
    times) when other processes took --busy of the CPUs or more while it
    ran, and keeps the least disturbed record."""
    best = None
    for _ in range(1 + a.retries):
        if time.monotonic() > a.deadline:  # out of patience: run as it is
            return server.run(name)
        if a.max_wait > 0:
            wait_quiet(a)
        r = server.run(name)
        if best is None or r.get("others", 1) < best.get("others", 1):
            best = r
        if "error" in r or r.get("others", 0) < a.busy:
            break
    return best


# ---------------------------------------------------------------- output


def fmt_ms(x):
    """3 significant digits, no exponent."""
    if x is None:
        return "—"
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    if x >= 1:
        return "%.2f" % x
    s = "%.3g" % x
    return s if "e" not in s else "%.6f" % x


def fmt_ratio(y, t):
    if y is None or t is None or t <= 0:
        return "—"
    return "%.2f" % (y / t)


def median(r):
    return r.get("median_ms") if r and "error" not in r else None


def best(r):
    return r.get("min_ms") if r and "error" not in r else None


def shape_text(r):
    """The shape fields of a record, compactly (V=1e6 D=64 ...)."""
    skip = {"name", "impl", "threads", "reps", "inner", "median_ms", "min_ms",
            "max_ms", "gbps", "gflops", "peak_rss_mb", "error", "per_op",
            "step_ms", "others", "mode", "sparse", "cpu_ms"}
    parts = []
    for k, v in r.items():
        if k in skip:
            continue
        if isinstance(v, int) and v >= 10000 and str(v).rstrip("0") == "1":
            v = "1e%d" % (len(str(v)) - 1)
        parts.append("%s=%s" % (k, v))
    return " ".join(parts)


def flag(r, a):
    return "*" if r and r.get("others", 0) >= a.busy else ""


def print_table(names, results, threads, a):
    """yoke and PyTorch medians (ms per step) and yoke / PyTorch."""
    head = ["benchmark", "shape"]
    for t in threads:
        head += ["yoke T=%d" % t, "torch T=%d" % t, "yoke/torch T=%d" % t,
                 "min/min T=%d" % t]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (4 * len(threads))) + "|")
    for n in names:
        first = results.get((n, threads[0], "yoke")) or {}
        row = [n, shape_text(first)]
        for t in threads:
            y, pt = results.get((n, t, "yoke")), results.get((n, t, "torch"))
            row += [fmt_ms(median(y)) + flag(y, a),
                    fmt_ms(median(pt)) + flag(pt, a),
                    fmt_ratio(median(y), median(pt)),
                    fmt_ratio(best(y), best(pt))]
        print("| " + " | ".join(row) + " |")


def print_details(names, results, threads, a):
    """min / max, GB/s and peak memory of every run."""
    print("| benchmark | T | impl | median ms | min ms | max ms | CPU ms | "
          "inner x reps | GB/s | GFLOP/s | peak RSS MiB | note |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in names:
        for t in threads:
            for impl in ("yoke", "torch"):
                r = results.get((n, t, impl))
                if not r:
                    continue
                note = r.get("error", "")[:90]
                if r.get("others", 0) >= a.busy:
                    note = ("others used %.0f%% of the CPUs; "
                            % (100 * r["others"]) + note)
                g = lambda k: ("%.3g" % r[k]) if k in r else ""
                runs = ("%d x %d" % (r["inner"], r["reps"])
                        if "inner" in r else "")
                print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s"
                      " | %s |"
                      % (n, t, impl, fmt_ms(r.get("median_ms")),
                         fmt_ms(r.get("min_ms")), fmt_ms(r.get("max_ms")),
                         fmt_ms(r.get("cpu_ms")), runs, g("gbps"), g("gflops"), g("peak_rss_mb"),
                         note))


def cpu(r):
    return r.get("cpu_ms") if r and "error" not in r else None


def print_cpu_table(names, results, a):
    """T=1 by process CPU time: the time slices other processes took are
    left out, so on a shared machine this is the steadier comparison."""
    print("| benchmark | yoke CPU ms | torch CPU ms | yoke/torch (CPU) | "
          "yoke/torch (wall) |")
    print("|---|---:|---:|---:|---:|")
    for n in names:
        y, pt = results.get((n, 1, "yoke")), results.get((n, 1, "torch"))
        if not y:
            continue
        print("| %s | %s | %s | %s | %s |"
              % (n, fmt_ms(cpu(y)), fmt_ms(cpu(pt)), fmt_ratio(cpu(y), cpu(pt)),
                 fmt_ratio(median(y), median(pt))))


def cpu_gbps(r):
    """GB/s over CPU time (T=1)."""
    if not r or "gbps" not in r or not r.get("cpu_ms"):
        return None
    return r["gbps"] * r["median_ms"] / r["cpu_ms"]


def print_gather_reference(names, results, threads, a):
    """Bag forward bandwidth at T=1 as a share of the plain gather loop's
    best, by wall time and by CPU time."""
    print("| benchmark (T=1) | yoke GB/s | torch GB/s | gather GB/s | yoke "
          "% of gather | torch % of gather | same, by CPU time: yoke | "
          "torch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        if not n.startswith("bag.fwd."):
            continue
        L = n.rsplit(".", 1)[1]
        refs = [results.get(("gather.%s.%s" % (v, L), 1, "yoke"))
                for v in ("plain", "prefetch")]
        refs = [r for r in refs if r and "gbps" in r]
        if not refs:
            continue
        ref = max(r["gbps"] for r in refs)
        ref_cpu = max(cpu_gbps(r) or 0 for r in refs)
        y = results.get((n, 1, "yoke")) or {}
        pt = results.get((n, 1, "torch")) or {}
        cell = lambda r: ("%.3g" % r["gbps"]) if "gbps" in r else "—"
        share = lambda r: ("%.0f%%" % (100 * r["gbps"] / ref)
                           if "gbps" in r else "—")
        share_cpu = lambda r: ("%.0f%%" % (100 * cpu_gbps(r) / ref_cpu)
                               if cpu_gbps(r) and ref_cpu else "—")
        print("| %s | %s | %s | %.3g | %s | %s | %s | %s |"
              % (n, cell(y), cell(pt), ref, share(y), share(pt),
                 share_cpu(y), share_cpu(pt)))


# ------------------------------------------------------------------ main


def main():
    # A kill ends the run through the finally below: the servers are told
    # to stop (their stdin closes) and the JSON log is flushed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    a = parse_args()
    threads = [int(t) for t in a.threads.split(",") if t]
    cmds = {t: tool_commands(a, t) for t in threads}
    names = listed(cmds[threads[0]]["yoke"])
    check_names(names, listed(cmds[threads[0]]["torch"]))
    if a.filter:
        names = [n for n in names if a.filter in n]
    # gather.* are plain C loops: yoke only.
    torch_has = lambda n: not n.startswith("gather.")
    servers = {(t, impl): Server(cmds[t][impl])
               for t in threads for impl in ("yoke", "torch")}
    results = {}
    log = open(a.json, "w") if a.json else None
    start = time.monotonic()
    a.deadline = start + a.patience
    try:
        for i, n in enumerate(names):
            order = ["yoke", "torch"] if i % 2 == 0 else ["torch", "yoke"]
            for t in threads:
                for impl in order:
                    if impl == "torch" and not torch_has(n):
                        continue
                    r = run_quietly(servers[(t, impl)], n, a)
                    r.setdefault("impl", impl)
                    results[(n, t, impl)] = r
                    if log:
                        log.write(json.dumps(r) + "\n")
                        log.flush()
                    print("%6.0fs %-28s T=%d %-5s %-10s others %.0f%%" % (
                        time.monotonic() - start, n, t, impl,
                        (r.get("error") or fmt_ms(r.get("median_ms")))[:40],
                        100 * r.get("others", 0)),
                        file=sys.stderr, flush=True)
    finally:
        for s in servers.values():
            s.close()
        if log:
            log.close()
    print("Median ms per step (per op for overhead.add_chain); yoke/torch > 1"
          " means yoke is slower (min/min: the same for the fastest "
          "repetitions); * = other processes used >= %d%% of the CPUs "
          "during the run (after %d retries).\n" % (100 * a.busy, a.retries))
    print_table(names, results, threads, a)
    print()
    if 1 in threads:
        print("T=1 by process CPU time (steadier on a shared machine):\n")
        print_cpu_table(names, results, a)
        print()
        print_gather_reference(names, results, threads, a)
        print()
    print_details(names, results, threads, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
