"""Side-by-side benchmark of Python's runzeo (ZEO 6) and `zeod serve`.

Run through benches/compare (it finds the pinned venv and the release
build). Both servers run on this machine, on loopback, each on a fresh
Data.fs, and are driven by the same drivers:

1. `zeod bench` (native, Rust): hot loadBefore with 1, 4, 16 connections
   (one request in flight each, like a ZEO client thread) and 16x8
   pipelined; commits with 1, 4, 8 writers of 1 object, 1 and 8 of 10;
   15 loading connections while one more commits (mixed).
2. Real Python ZEO client processes (ClientStorage with its cache off for
   loads, ZODB transactions for commits, inserts into one shared OOBTree
   for conflict-heavy commits): server CPU per operation, which stays
   comparable when the Python clients are the bottleneck.
3. On a Data.fs of --objects live objects with history and garbage,
   written by Python's FileStorage (makefs.py): start-up time on an empty
   file, without Data.fs.index (index rebuild) and with it; RSS after
   opening and after 100k loads; pack time (ClientStorage.pack, as
   zeopack) alone and while `zeod bench` loads, and load latency during
   the pack against the same loads with no pack running.

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


def rss_mib(pid, field="VmRSS"):
    """Resident memory; field "RssAnon" leaves out file-backed pages (the
    program's code and libraries, shared with the page cache)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
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

    def rss_anon(self):
        return rss_mib(self.pid, "RssAnon")

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
    commits = [(1, 1), (1, 10), (4, 1), (8, 1), (8, 10)]
    if quick:
        loads, commits = [(1, 1), (4, 1), (16, 1)], [(1, 1), (8, 1)]
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
    ap.add_argument("--objects", type=int, help="live objects of the Data.fs of the "
                    "start-up, memory and pack phases (default 200000, quick 50000)")
    ap.add_argument("--phases", default="native,python,big", type=lambda v: v.split(","),
                    help="which groups to run: native (zeod bench), python (ZEO "
                    "client processes), big (start-up, RSS, pack on a large "
                    "Data.fs); default all")
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
        "seconds_per_phase": seconds, "native": {}, "python": {}, "startup": {},
        "pack": {}}
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
                results["native"][kind], results["python"][kind] = {}, {}
                if "native" not in args.phases and "python" not in args.phases:
                    continue
                d = os.path.join(work, kind)
                os.makedirs(d, exist_ok=True)
                servers[kind] = Server(kind, command, os.path.join(d, "Data.fs"))
                log(f"{kind}: setup of {args.keys} objects")
                zeod_bench(args.zeod, servers[kind], "--setup", args.keys, "--phases", "none")
            kinds = list(servers)
            native = native_phases(args.quick) if "native" in args.phases else []
            for i, (label, bench_args) in enumerate(native):
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
                 ("commit", 1, 1), ("commit", 8, 1), ("btree", 4, 10_000)]
            if "python" not in args.phases:
                runs = []
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
        if "big" in args.phases:
            big_file_phases(args, commands, objects, seconds, work, results)
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


def copy_datafs(source, path, with_index):
    for suffix in ("", ".index", ".old", ".pack", ".lock", ".tmp"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    shutil.copyfile(source, path)
    if with_index:
        shutil.copyfile(source + ".index", path + ".index")


def remove_datafs(path):
    for suffix in ("", ".index", ".old", ".pack", ".lock", ".tmp"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def big_file_phases(args, commands, objects, seconds, work, results):
    """Start-up (index rebuild, saved index), RSS and pack, on a Data.fs of
    `objects` live objects with history and garbage written by Python."""
    big = os.path.join(work, "big")
    os.makedirs(big, exist_ok=True)
    source = os.path.join(big, "source.fs")
    log(f"big file: Python FileStorage writes {objects} objects (benches/makefs.py)")
    out = subprocess.run([args.python, os.path.join(HERE, "makefs.py"), source, str(objects)],
                         capture_output=True, text=True, timeout=7200, check=True)
    made = json.loads(out.stdout)
    made["datafs_mib"] = os.path.getsize(source) / 2**20
    results["bigfile"] = made
    kinds = list(commands)
    try:
        for kind in kinds:
            # Start-up of the program itself: Python's interpreter and
            # imports, for runzeo; what the rebuild figure must not include.
            path = os.path.join(big, f"empty-{kind}.fs")
            server = Server(kind, commands[kind], path)
            empty = {"seconds": server.startup, "rss_mib": server.rss(),
                     "rss_anon_mib": server.rss_anon()}
            server.stop()
            remove_datafs(path)
            path = os.path.join(big, f"{kind}.fs")
            copy_datafs(source, path, with_index=False)
            log(f"{kind}: start-up without an index ({made['datafs_mib']:.0f} MiB)")
            server = Server(kind, commands[kind], path)
            cold = {"seconds": server.startup, "rss_mib": server.rss(),
                    "rss_anon_mib": server.rss_anon(), "cpu_s": server.cpu()}
            # Touch objects so the RSS includes what serving them needs.
            zeod_bench(args.zeod, server, "--keys", objects, "-c", 2, "-P", 16,
                       "-n", min(objects, 100_000))
            cold["rss_after_loads_mib"] = server.rss()
            cold["rss_anon_after_loads_mib"] = server.rss_anon()
            server.stop()
            log(f"{kind}: start-up with its index")
            server = Server(kind, commands[kind], path)
            warm = {"seconds": server.startup, "rss_mib": server.rss(),
                    "rss_anon_mib": server.rss_anon()}
            server.stop()
            remove_datafs(path)
            results["startup"][kind] = {"empty": empty, "no_index": cold, "with_index": warm,
                                        "datafs_mib": made["datafs_mib"]}
        keys = min(args.keys, objects)
        load = ["--keys", keys, "-c", 4, "-P", 1]
        for i, kind in enumerate(kinds):
            path = os.path.join(big, f"pack-{kind}.fs")
            copy_datafs(source, path, with_index=True)
            server = Server(kind, commands[kind], path)
            try:
                log(f"{kind}: loads with no pack running")
                idle = zeod_bench(args.zeod, server, *load, "-d", seconds)["phases"][0]
                log(f"{kind}: pack, no other load")
                cpu0 = server.cpu()
                alone = python_pack(args.python, server)
                alone["server_cpu_s"] = server.cpu() - cpu0
            finally:
                server.stop()
            packed_mib = os.path.getsize(path) / 2**20
            copy_datafs(source, path, with_index=True)
            server = Server(kind, commands[kind], path)
            try:
                log(f"{kind}: pack while 4 connections load")
                busy = python_pack(args.python, server, lambda pid: zeod_bench(
                    args.zeod, server, *load, "-d", 3600, "--while-pid", pid))
            finally:
                server.stop()
                remove_datafs(path)
            results["pack"][kind] = {"idle_loads": idle, "alone": alone, "under_load": busy,
                                     "packed_mib": packed_mib,
                                     "datafs_mib": made["datafs_mib"]}
    finally:
        remove_datafs(source)


def python_pack(python, server, meanwhile=None):
    """Times one ClientStorage.pack() to now (pyclient.py pack); with
    `meanwhile`, calls it with the pack client's pid right after the go."""
    script = os.path.join(HERE, "pyclient.py")
    proc = subprocess.Popen([python, script, "pack", server.address, "0", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("python pack client failed to connect")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    during = meanwhile(proc.pid) if meanwhile else None
    result = json.loads(proc.stdout.readline())
    proc.stdin.close()
    proc.wait(60)
    if result["errors"]:
        raise RuntimeError("pack failed")
    out = {"seconds": result["seconds"]}
    if during is not None:
        out["loads"] = during["phases"][0]
    return out


def pair(py, rs, fmt):
    cell = lambda v: "-" if v is None else fmt.format(v)
    return f"{cell(py)} / {cell(rs)}"


def print_report(results, objects):
    """Markdown tables: "runzeo / zeod" in each cell, ratios where higher
    means zeod is better."""
    m = results["machine"]
    print(f"zeod vs runzeo on {m['cpus']} CPUs ({m['cpu']}, Linux {m['kernel']}); "
          f"{results['seconds_per_phase']}s per phase; {results['total_seconds']:.0f}s in all")
    if "fsyncs_per_second_after_phases" in m:
        print(f"machine load average {m['loadavg_at_start'][0]:.1f} at start, "
              f"{m['loadavg_at_end'][0]:.1f} at end; 300-byte append+fsync: "
              f"{m['fsyncs_per_second_at_start']:.0f}/s at start, "
              f"{m['fsyncs_per_second_after_phases']:.0f}/s after the phases")
    nat = results["native"]
    if nat.get("runzeo"):
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
    if pyr.get("runzeo"):
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
    if st:
        py, rs = st["runzeo"], st["zeod"]
        made = results.get("bigfile", {})
        print(f"\nStart-up and memory on a Data.fs of {objects} live objects "
              f"({py['datafs_mib']:.0f} MiB, written by Python's FileStorage: "
              f"{made.get('rewritten', '?')} rewritten once, {made.get('garbage', '?')} "
              "unreachable)\n")
        print("| figure | runzeo | zeod | zeod × |")
        print("|---|---|---|---|")
        rows = []
        if "empty" in py:
            rows.append(("start, empty Data.fs (the program itself), s",
                         py["empty"]["seconds"], rs["empty"]["seconds"], "{:.2f}"))
        rows += [
            ("start, no index (rebuild), s", py["no_index"]["seconds"],
             rs["no_index"]["seconds"], "{:.2f}"),
        ]
        if "empty" in py:
            rows.append(("index rebuild alone (no index − empty), s",
                         py["no_index"]["seconds"] - py["empty"]["seconds"],
                         rs["no_index"]["seconds"] - rs["empty"]["seconds"], "{:.2f}"))
        rows += [
            ("start, with index, s", py["with_index"]["seconds"],
             rs["with_index"]["seconds"], "{:.2f}"),
            ("RSS after open (rebuilt), MiB", py["no_index"]["rss_mib"],
             rs["no_index"]["rss_mib"], "{:.1f}"),
            ("RSS after 100k loads, MiB", py["no_index"]["rss_after_loads_mib"],
             rs["no_index"]["rss_after_loads_mib"], "{:.1f}"),
            ("RSS after open with index, MiB", py["with_index"]["rss_mib"],
             rs["with_index"]["rss_mib"], "{:.1f}"),
        ]
        if "rss_anon_mib" in py["no_index"]:
            rows += [
                ("RSS, empty Data.fs, MiB", py["empty"]["rss_mib"], rs["empty"]["rss_mib"],
                 "{:.1f}"),
                ("anonymous RSS (no code pages), empty Data.fs, MiB",
                 py["empty"]["rss_anon_mib"], rs["empty"]["rss_anon_mib"], "{:.1f}"),
                ("anonymous RSS after open (rebuilt), MiB", py["no_index"]["rss_anon_mib"],
                 rs["no_index"]["rss_anon_mib"], "{:.1f}"),
                ("anonymous RSS after 100k loads, MiB",
                 py["no_index"]["rss_anon_after_loads_mib"],
                 rs["no_index"]["rss_anon_after_loads_mib"], "{:.1f}"),
            ]
        for label, a, b, fmt in rows:
            print(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio(a, b, False)} |")

    pk = results.get("pack") or {}
    if pk:
        py, rs = pk["runzeo"], pk["zeod"]
        print(f"\nPack to now with GC (`ClientStorage.pack()`, as zeopack), same file; "
              "loads: `zeod bench` 4 connections, 1 in flight each\n")
        print("| figure | runzeo | zeod | zeod × |")
        print("|---|---|---|---|")
        p99 = lambda phase: phase["latency_us"]["p99"] / 1e3
        p50 = lambda phase: phase["latency_us"]["p50"] / 1e3
        rows = [
            ("pack time, no other load, s", py["alone"]["seconds"], rs["alone"]["seconds"],
             "{:.2f}", False),
            ("server CPU of that pack, s", py["alone"]["server_cpu_s"],
             rs["alone"]["server_cpu_s"], "{:.2f}", False),
            ("pack time while loads run, s", py["under_load"]["seconds"],
             rs["under_load"]["seconds"], "{:.2f}", False),
            ("Data.fs before → after pack, MiB",
             f"{py['datafs_mib']:.1f} → {py['packed_mib']:.1f}",
             f"{rs['datafs_mib']:.1f} → {rs['packed_mib']:.1f}", "{}", None),
            ("loads/s idle", py["idle_loads"]["ops_per_sec"],
             rs["idle_loads"]["ops_per_sec"], "{:.0f}", True),
            ("loads/s during pack", py["under_load"]["loads"]["ops_per_sec"],
             rs["under_load"]["loads"]["ops_per_sec"], "{:.0f}", True),
            ("load p50 idle, ms", p50(py["idle_loads"]), p50(rs["idle_loads"]), "{:.2f}", False),
            ("load p50 during pack, ms", p50(py["under_load"]["loads"]),
             p50(rs["under_load"]["loads"]), "{:.2f}", False),
            ("load p99 idle, ms", p99(py["idle_loads"]), p99(rs["idle_loads"]), "{:.2f}", False),
            ("load p99 during pack, ms", p99(py["under_load"]["loads"]),
             p99(rs["under_load"]["loads"]), "{:.2f}", False),
            ("p99 during pack / p99 idle", p99(py["under_load"]["loads"]) / p99(py["idle_loads"]),
             p99(rs["under_load"]["loads"]) / p99(rs["idle_loads"]), "{:.1f}×", False),
        ]
        for label, a, b, fmt, better in rows:
            print(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio(a, b, better)} |")

    print("\nzeod × = how many times better zeod's figure is (throughput higher, "
          "latency/CPU/time/RSS lower). server starved = share of the wall time the "
          "server's threads were runnable but had no CPU (schedstat).")


if __name__ == "__main__":
    main()
