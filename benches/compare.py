"""Side-by-side benchmark of Python's runzeo (ZEO 6) and `zeod serve`.

Run through benches/compare (it finds the pinned venv and the release
build). Both servers run on this machine, on loopback, each on a fresh
Data.fs, and are driven by the same drivers:

1. `zeod bench` (native, Rust): hot loadBefore with 1, 4, 16 connections
   (one request in flight each, like a ZEO client thread) and 16x8
   pipelined; commits with 1, 4, 8 writers of 1 object, 8 writers of 10.
2. Real Python ZEO client processes (ClientStorage with its cache off for
   loads, ZODB transactions for commits): server CPU per operation, which
   stays comparable when the Python clients are the bottleneck.
3. Start-up time (index rebuild without Data.fs.index, then with it) and
   RSS after opening a Data.fs of --objects objects.

Server CPU is utime+stime from /proc/PID/stat sampled around each phase;
client CPU is what the driver processes report for themselves. This is a
report, not a test: nothing here asserts a time.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICKS = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def greets(port):
    """True once the server accepts and sends its protocol greeting."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            return len(s.recv(6)) == 6
    except OSError:
        return False


class Server:
    """runzeo or zeod serve on a free loopback port, stopped by stop()."""

    def __init__(self, kind, command, datafs):
        self.kind, self.datafs = kind, datafs
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        argv = command + ["-a", self.address, "-f", datafs]
        self.logfile = open(datafs + f".{kind}.log", "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = t0 + 600
        while not greets(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited; see {self.logfile.name}")
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"{kind} did not start in 600 s")
            time.sleep(0.01)
        self.startup = time.perf_counter() - t0
        self.pid = self.proc.pid

    def cpu(self):
        return cpu_seconds(self.pid)

    def rss(self):
        return rss_mib(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()


def zeod_bench(zeod, server, *args):
    argv = [zeod, "bench", server.address, "--json", "--server-pid", str(server.pid)]
    argv += [str(a) for a in args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if not out.stdout.strip():
        raise RuntimeError(f"zeod bench failed: {out.stderr}")
    return json.loads(out.stdout)


def python_clients(python, server, mode, processes, count, seconds):
    """Runs `processes` pyclient.py processes together; returns totals."""
    script = os.path.join(HERE, "pyclient.py")
    procs = [
        subprocess.Popen(
            [python, script, mode, server.address, str(count), str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"python {mode} client failed to connect")
    cpu0, t0 = server.cpu(), time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in procs]
    server_cpu, wall = server.cpu() - cpu0, time.perf_counter() - t0
    for p in procs:
        p.stdin.close()
        p.wait(60)
    ops = sum(r["ops"] for r in results)
    return {
        "ops": ops,
        "errors": sum(r["errors"] for r in results),
        "ops_per_sec": ops / max(r["seconds"] for r in results),
        "server_cpu_s": server_cpu,
        "server_cores": server_cpu / wall,
        "server_us_per_op": server_cpu * 1e6 / max(ops, 1),
        "client_us_per_op": sum(r["cpu"] for r in results) * 1e6 / max(ops, 1),
    }


def ratio(python_figure, zeod_figure, higher_is_better):
    if not python_figure or not zeod_figure:
        return "-"
    r = zeod_figure / python_figure if higher_is_better else python_figure / zeod_figure
    return f"{r:.2f}x"


def print_table(title, rows):
    """rows: (label, runzeo, zeod, higher_is_better, unit)."""
    print(f"\n{title}")
    print(f"  {'':<40} {'runzeo':>12} {'zeod':>12} {'zeod better by':>15}")
    for label, py, rs, higher, fmt in rows:
        print(f"  {label:<40} {fmt.format(py):>12} {fmt.format(rs):>12} "
              f"{ratio(py, rs, higher):>15}")


def native_phases(quick):
    """(label, zeod bench args) of the native driver's runs."""
    loads = [(1, 1), (4, 1), (16, 1), (16, 8)]
    commits = [(1, 1), (4, 1), (8, 1), (8, 10)]
    if quick:
        loads, commits = [(1, 1), (4, 1), (16, 1)], [(1, 1), (4, 1)]
    runs = [(f"load c={c} P={p}", ["--phases", "load", "-c", c, "-P", p]) for c, p in loads]
    runs += [(f"commit c={c} k={k}",
              ["--phases", "commit", "-c", c, "--objects-per-txn", k]) for c, k in commits]
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zeod", required=True, help="release zeod binary")
    ap.add_argument("--python", default=sys.executable, help="venv python with ZEO 6")
    ap.add_argument("--runzeo", required=True, help="the venv's runzeo script")
    ap.add_argument("--quick", action="store_true", help="a run of about 90 s")
    ap.add_argument("--seconds", type=float, help="per phase (default 4, quick 1.5)")
    ap.add_argument("--objects", type=int, help="objects of the start-up Data.fs "
                    "(default 200000, quick 50000)")
    ap.add_argument("--keys", type=int, default=5000, help="objects the loads read")
    ap.add_argument("--json-out", help="also write all figures here")
    ap.add_argument("--workdir", help="keep files here instead of a temp dir")
    args = ap.parse_args()
    seconds = args.seconds or (1.5 if args.quick else 4.0)
    objects = args.objects or (50_000 if args.quick else 200_000)
    work = args.workdir or tempfile.mkdtemp(prefix="zeod-compare-")
    os.makedirs(work, exist_ok=True)
    commands = {"runzeo": [args.runzeo], "zeod": [args.zeod, "serve"]}
    results = {"machine": {
        "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
        "loadavg_at_start": os.getloadavg(), "kernel": platform.release()},
        "seconds_per_phase": seconds, "native": {}, "python": {}, "startup": {}}
    started = time.perf_counter()
    log(f"zeod compare: work dir {work}, {seconds}s per phase, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    try:
        for kind, command in commands.items():
            d = os.path.join(work, kind)
            os.makedirs(d, exist_ok=True)
            server = Server(kind, command, os.path.join(d, "Data.fs"))
            try:
                log(f"{kind}: setup of {args.keys} objects")
                zeod_bench(args.zeod, server, "--setup", args.keys, "--phases", "none")
                native = results["native"][kind] = {}
                for label, bench_args in native_phases(args.quick):
                    log(f"{kind}: zeod bench {label}")
                    report = zeod_bench(args.zeod, server, "--keys", args.keys,
                                        "-d", seconds, *bench_args)
                    native[label] = report["phases"][0]
                py = results["python"][kind] = {}
                runs = [("load", 4, args.keys), ("commit", 2, 1)] if args.quick else \
                       [("load", 4, args.keys), ("load", 8, args.keys),
                        ("commit", 1, 1), ("commit", 4, 1)]
                for mode, procs, count in runs:
                    label = f"{mode} {procs} processes"
                    log(f"{kind}: python {label}")
                    py[label] = python_clients(args.python, server, mode, procs, count, seconds)
            finally:
                server.stop()

        # A big Data.fs, written once by zeod (quick to fill), copied for each.
        big = os.path.join(work, "big")
        os.makedirs(big, exist_ok=True)
        source = os.path.join(big, "source.fs")
        log(f"start-up: writing a Data.fs of {objects} objects")
        writer = Server("zeod", commands["zeod"], source)
        try:
            zeod_bench(args.zeod, writer, "--setup", objects, "--setup-batch", 2000,
                       "--phases", "none")
        finally:
            writer.stop()
        for kind, command in commands.items():
            path = os.path.join(big, f"{kind}.fs")
            shutil.copyfile(source, path)
            log(f"{kind}: start-up without an index")
            server = Server(kind, command, path)
            cold = {"seconds": server.startup, "rss_mib": server.rss(),
                    "cpu_s": server.cpu()}
            # Touch every object once so the RSS includes what serving them needs.
            zeod_bench(args.zeod, server, "--keys", objects, "-c", 2, "-P", 16,
                       "-n", min(objects, 100_000))
            cold["rss_after_loads_mib"] = server.rss()
            server.stop()
            log(f"{kind}: start-up with its index")
            server = Server(kind, command, path)
            warm = {"seconds": server.startup, "rss_mib": server.rss()}
            server.stop()
            results["startup"][kind] = {"no_index": cold, "with_index": warm,
                                        "datafs_mib": os.path.getsize(path) / 2**20}
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - started

    print_report(results, objects)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)


def print_report(results, objects):
    m = results["machine"]
    print(f"zeod vs runzeo on {m['cpus']} CPUs ({m['cpu']}, Linux {m['kernel']}), "
          f"load average {m['loadavg_at_start'][0]:.1f} at start; "
          f"{results['seconds_per_phase']}s per phase; {results['total_seconds']:.0f}s in all")
    nat = results["native"]
    rows = []
    for label in nat["runzeo"]:
        py, rs = nat["runzeo"][label], nat["zeod"][label]
        rows += [
            (f"{label}: ops/s", py["ops_per_sec"], rs["ops_per_sec"], True, "{:.0f}"),
            (f"{label}: p50 ms", py["latency_us"]["p50"] / 1e3,
             rs["latency_us"]["p50"] / 1e3, False, "{:.3f}"),
            (f"{label}: p99 ms", py["latency_us"]["p99"] / 1e3,
             rs["latency_us"]["p99"] / 1e3, False, "{:.3f}"),
            (f"{label}: server CPU us/op", py["server_cpu_us_per_op"],
             rs["server_cpu_us_per_op"], False, "{:.1f}"),
            (f"{label}: driver CPU us/op", py["client_cpu_us_per_op"],
             rs["client_cpu_us_per_op"], False, "{:.1f}"),
        ]
        errors = py["errors"] + rs["errors"]
        if errors:
            rows.append((f"{label}: ERRORS", py["errors"], rs["errors"], False, "{}"))
    print_table("Native driver (zeod bench, pickle)", rows)

    pyr = results["python"]
    rows = []
    for label in pyr["runzeo"]:
        py, rs = pyr["runzeo"][label], pyr["zeod"][label]
        rows += [
            (f"{label}: ops/s", py["ops_per_sec"], rs["ops_per_sec"], True, "{:.0f}"),
            (f"{label}: server CPU us/op", py["server_us_per_op"],
             rs["server_us_per_op"], False, "{:.1f}"),
            (f"{label}: server cores busy", py["server_cores"], rs["server_cores"],
             False, "{:.2f}"),
            (f"{label}: client CPU us/op", py["client_us_per_op"],
             rs["client_us_per_op"], False, "{:.0f}"),
        ]
        if py["errors"] + rs["errors"]:
            rows.append((f"{label}: ERRORS", py["errors"], rs["errors"], False, "{}"))
    print_table("Python ZEO 6 client processes", rows)

    st = results["startup"]
    py, rs = st["runzeo"], st["zeod"]
    print_table(f"Start-up on a Data.fs of {objects} objects "
                f"({py['datafs_mib']:.0f} MiB)", [
        ("start, no index (rebuild) s", py["no_index"]["seconds"],
         rs["no_index"]["seconds"], False, "{:.2f}"),
        ("start, with index s", py["with_index"]["seconds"],
         rs["with_index"]["seconds"], False, "{:.2f}"),
        ("RSS after open (rebuilt) MiB", py["no_index"]["rss_mib"],
         rs["no_index"]["rss_mib"], False, "{:.1f}"),
        ("RSS after loads MiB", py["no_index"]["rss_after_loads_mib"],
         rs["no_index"]["rss_after_loads_mib"], False, "{:.1f}"),
        ("RSS after open with index MiB", py["with_index"]["rss_mib"],
         rs["with_index"]["rss_mib"], False, "{:.1f}"),
    ])


if __name__ == "__main__":
    main()
