"""Side-by-side benchmark of Python's runzeo (ZEO 6) and `zeod serve`.

Run through benches/compare (it finds the pinned venv and the release
build). Both servers run on this machine, on loopback, each on a fresh
Data.fs, and are driven by the same drivers:

1. `zeod bench` (native, Rust): hot loadBefore with 1, 4, 16 connections
   (one request in flight each, like a ZEO client thread) and 16x8
   pipelined; commits with 1, 4, 8 writers of 1 object, 8 writers of 10;
   15 loading connections while one more commits (mixed).
2. Real Python ZEO client processes (ClientStorage with its cache off for
   loads, ZODB transactions for commits, inserts into one shared OOBTree
   for conflict-heavy commits): server CPU per operation, which stays
   comparable when the Python clients are the bottleneck.
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


def sched_seconds(pid):
    """(on-CPU, runnable-but-waiting) seconds of all threads of pid, from
    /proc/PID/task/*/schedstat: the wait shows a CPU-starved process."""
    run = wait = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                r, w, _ = f.read().split()
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        run, wait = run + int(r), wait + int(w)
    return run / 1e9, wait / 1e9


def fsyncs_per_second(directory, seconds=0.5):
    """Appends of 300 bytes, each made durable, per second: what bounds
    commits (both servers fsync once per transaction)."""
    path = os.path.join(directory, "fsync-probe")
    n, t0 = 0, time.perf_counter()
    with open(path, "ab") as f:
        while time.perf_counter() - t0 < seconds:
            f.write(b"x" * 300)
            f.flush()
            os.fsync(f.fileno())
            n += 1
    os.unlink(path)
    return n / (time.perf_counter() - t0)


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
    (_, wait0), t0 = sched_seconds(server.pid), time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    (_, wait1), wall = sched_seconds(server.pid), time.perf_counter() - t0
    if not out.stdout.strip():
        raise RuntimeError(f"zeod bench failed: {out.stderr}")
    result = json.loads(out.stdout)
    for phase in result["phases"]:
        phase["server_runqueue_wait_share"] = (wait1 - wait0) / wall
    return result


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
    _, wait0 = sched_seconds(server.pid)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in procs]
    server_cpu, wall = server.cpu() - cpu0, time.perf_counter() - t0
    _, wait1 = sched_seconds(server.pid)
    for p in procs:
        p.stdin.close()
        p.wait(60)
    ops = sum(r["ops"] for r in results)
    return {
        "ops": ops,
        "errors": sum(r["errors"] for r in results),
        "conflicts": sum(r.get("conflicts", 0) for r in results),
        "ops_per_sec": ops / max(r["seconds"] for r in results),
        "server_cpu_s": server_cpu,
        "server_cores": server_cpu / wall,
        "server_runqueue_wait_share": (wait1 - wait0) / wall,
        "server_us_per_op": server_cpu * 1e6 / max(ops, 1),
        "client_us_per_op": sum(r["cpu"] for r in results) * 1e6 / max(ops, 1),
    }


def ratio(python_figure, zeod_figure, higher_is_better):
    """How many times better zeod's figure is; "-" where better is undefined."""
    if not python_figure or not zeod_figure or higher_is_better is None:
        return "-"
    r = zeod_figure / python_figure if higher_is_better else python_figure / zeod_figure
    return f"{r:.2f}x"


def native_phases(quick):
    """(label, zeod bench args) of the native driver's runs."""
    loads = [(1, 1), (4, 1), (16, 1), (16, 8)]
    commits = [(1, 1), (4, 1), (8, 1), (8, 10)]
    if quick:
        loads, commits = [(1, 1), (4, 1), (16, 1)], [(1, 1), (4, 1)]
    runs = [(f"load c={c} P={p}", ["--phases", "load", "-c", c, "-P", p]) for c, p in loads]
    runs += [(f"commit c={c} k={k}",
              ["--phases", "commit", "-c", c, "--objects-per-txn", k]) for c, k in commits]
    # Loads while one client commits: do reads queue behind commits?
    runs.append(("mixed c=16 w=1", ["--phases", "mixed", "-c", 16, "--writers", 1]))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zeod", help="release zeod binary")
    ap.add_argument("--python", default=sys.executable, help="venv python with ZEO 6")
    ap.add_argument("--runzeo", help="the venv's runzeo script")
    ap.add_argument("--quick", action="store_true", help="a run of about 90 s")
    ap.add_argument("--seconds", type=float, help="per phase (default 4, quick 1.5)")
    ap.add_argument("--objects", type=int, help="objects of the start-up Data.fs "
                    "(default 200000, quick 50000)")
    ap.add_argument("--keys", type=int, default=5000, help="objects the loads read")
    ap.add_argument("--json-out", help="also write all figures here")
    ap.add_argument("--workdir", help="keep files here instead of a temp dir")
    ap.add_argument("--report", metavar="JSON", help="only print the tables of an "
                    "earlier --json-out")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        print_report(results, results["startup_objects"])
        return
    if not (args.zeod and args.runzeo):
        ap.error("--zeod and --runzeo are required (benches/compare passes them)")
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
    results["machine"]["fsyncs_per_second_at_start"] = fsyncs_per_second(work)
    log(f"zeod compare: work dir {work}, {seconds}s per phase, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    try:
        # Both servers run side by side and each phase drives one right
        # after the other (order alternating), so both see the same
        # background load of a shared machine.
        servers = {}
        try:
            for kind, command in commands.items():
                d = os.path.join(work, kind)
                os.makedirs(d, exist_ok=True)
                servers[kind] = Server(kind, command, os.path.join(d, "Data.fs"))
                results["native"][kind], results["python"][kind] = {}, {}
                log(f"{kind}: setup of {args.keys} objects")
                zeod_bench(args.zeod, servers[kind], "--setup", args.keys, "--phases", "none")
            kinds = list(servers)
            for i, (label, bench_args) in enumerate(native_phases(args.quick)):
                for kind in kinds if i % 2 == 0 else kinds[::-1]:
                    log(f"{kind}: zeod bench {label}")
                    report = zeod_bench(args.zeod, servers[kind], "--keys", args.keys,
                                        "-d", seconds, *bench_args)
                    for row in report["phases"]:
                        name = label if len(report["phases"]) == 1 else \
                            f"{label} {row['phase'].split('/')[-1]}"
                        results["native"][kind][name] = row
            runs = [("load", 4, args.keys), ("commit", 2, 1), ("btree", 4, 10_000)] \
                if args.quick else \
                [("load", 4, args.keys), ("load", 8, args.keys),
                 ("commit", 1, 1), ("commit", 4, 1), ("btree", 4, 10_000)]
            for i, (mode, procs, count) in enumerate(runs):
                label = f"{mode} {procs} processes"
                for kind in kinds if i % 2 == 0 else kinds[::-1]:
                    log(f"{kind}: python {label}")
                    results["python"][kind][label] = python_clients(
                        args.python, servers[kind], mode, procs, count, seconds)
        finally:
            for server in servers.values():
                server.stop()

        results["machine"]["fsyncs_per_second_after_phases"] = fsyncs_per_second(work)
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
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["startup_objects"] = objects

    print_report(results, objects)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)


def pair(py, rs, fmt):
    cell = lambda v: "-" if v is None else fmt.format(v)
    return f"{cell(py)} / {cell(rs)}"


def print_report(results, objects):
    """Markdown tables: "runzeo / zeod" in each cell, ratios where higher
    means zeod is better."""
    m = results["machine"]
    print(f"zeod vs runzeo on {m['cpus']} CPUs ({m['cpu']}, Linux {m['kernel']}); "
          f"{results['seconds_per_phase']}s per phase; {results['total_seconds']:.0f}s in all")
    if "loadavg_at_end" in m:
        print(f"machine load average {m['loadavg_at_start'][0]:.1f} at start, "
              f"{m['loadavg_at_end'][0]:.1f} at end; 300-byte append+fsync: "
              f"{m['fsyncs_per_second_at_start']:.0f}/s at start, "
              f"{m['fsyncs_per_second_after_phases']:.0f}/s after the phases")
    nat = results["native"]
    print("\nNative driver (`zeod bench`, pickle); cells are runzeo / zeod\n")
    print("| run | ops/s | zeod × | p50 ms | p99 ms | server µs/op | zeod × "
          "| server cores | server starved | driver µs/op | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label in nat["runzeo"]:
        py, rs = nat["runzeo"][label], nat["zeod"][label]
        print(f"| {label} "
              f"| {pair(py['ops_per_sec'], rs['ops_per_sec'], '{:.0f}')} "
              f"| {ratio(py['ops_per_sec'], rs['ops_per_sec'], True)} "
              f"| {pair(py['latency_us']['p50'] / 1e3, rs['latency_us']['p50'] / 1e3, '{:.2f}')} "
              f"| {pair(py['latency_us']['p99'] / 1e3, rs['latency_us']['p99'] / 1e3, '{:.2f}')} "
              f"| {pair(py['server_cpu_us_per_op'], rs['server_cpu_us_per_op'], '{:.0f}')} "
              f"| {ratio(py['server_cpu_us_per_op'], rs['server_cpu_us_per_op'], False)} "
              f"| {pair(py['server_cpu_s'] / py['seconds'], rs['server_cpu_s'] / rs['seconds'], '{:.2f}')} "
              f"| {pair(py.get('server_runqueue_wait_share'), rs.get('server_runqueue_wait_share'), '{:.2f}')} "
              f"| {pair(py['client_cpu_us_per_op'], rs['client_cpu_us_per_op'], '{:.0f}')} "
              f"| {py['errors']} / {rs['errors']} |")

    pyr = results["python"]
    print("\nPython ZEO 6 client processes; cells are runzeo / zeod\n")
    print("| run | ops/s | zeod × | server µs/op | zeod × | server cores "
          "| server starved | client µs/op | conflicts | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label in pyr["runzeo"]:
        py, rs = pyr["runzeo"][label], pyr["zeod"][label]
        print(f"| {label} "
              f"| {pair(py['ops_per_sec'], rs['ops_per_sec'], '{:.0f}')} "
              f"| {ratio(py['ops_per_sec'], rs['ops_per_sec'], True)} "
              f"| {pair(py['server_us_per_op'], rs['server_us_per_op'], '{:.0f}')} "
              f"| {ratio(py['server_us_per_op'], rs['server_us_per_op'], False)} "
              f"| {pair(py['server_cores'], rs['server_cores'], '{:.2f}')} "
              f"| {pair(py.get('server_runqueue_wait_share'), rs.get('server_runqueue_wait_share'), '{:.2f}')} "
              f"| {pair(py['client_us_per_op'], rs['client_us_per_op'], '{:.0f}')} "
              f"| {py.get('conflicts', 0)} / {rs.get('conflicts', 0)} "
              f"| {py['errors']} / {rs['errors']} |")
    print("\n(btree = every process inserts random keys into one shared OOBTree; "
          "ops are successful commits, conflicts the ConflictErrors retried.)")

    st = results["startup"]
    py, rs = st["runzeo"], st["zeod"]
    print(f"\nStart-up on a Data.fs of {objects} objects ({py['datafs_mib']:.0f} MiB)\n")
    print("| figure | runzeo | zeod | zeod × |")
    print("|---|---|---|---|")
    for label, a, b, fmt in [
        ("start, no index (rebuild), s", py["no_index"]["seconds"], rs["no_index"]["seconds"], "{:.2f}"),
        ("start, with index, s", py["with_index"]["seconds"], rs["with_index"]["seconds"], "{:.2f}"),
        ("RSS after open (rebuilt), MiB", py["no_index"]["rss_mib"], rs["no_index"]["rss_mib"], "{:.1f}"),
        ("RSS after loads, MiB", py["no_index"]["rss_after_loads_mib"],
         rs["no_index"]["rss_after_loads_mib"], "{:.1f}"),
        ("RSS after open with index, MiB", py["with_index"]["rss_mib"],
         rs["with_index"]["rss_mib"], "{:.1f}"),
    ]:
        print(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio(a, b, False)} |")
    print("\nzeod × = how many times better zeod's figure is (throughput higher, "
          "latency/CPU/time/RSS lower). server starved = share of the wall time the "
          "server's threads were runnable but had no CPU (schedstat).")


if __name__ == "__main__":
    main()
