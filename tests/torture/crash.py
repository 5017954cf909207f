"""Crash torture: zeod is killed with SIGKILL while clients commit.

Run with the pinned venv's python (``bash tests/python/venv.sh`` prints it)::

    python tests/torture/crash.py --quick            # CI: a few rounds
    python tests/torture/crash.py --rounds 200 --clients 8

Client processes (real ZEO ``ClientStorage`` + ``ZODB.DB``) commit
continuously. Client ``i`` owns ``--slots`` objects and nobody else writes
them, so every value in the database is attributable: a transaction by
client ``i`` with sequence number ``s`` writes ``"c<i>:s<s>"`` into a random
subset of its objects, with the description ``crash c<i> s<s>``.

Each client keeps a journal (one line per event, fsynced before it goes on):

    B <seq> <oid-hex>,...   about to call transaction.commit()
    OK <seq> <tid-hex>      commit() returned: the server acknowledged it
    MAYBE <seq> <error>     commit() raised: the outcome is unknown

Each round the server is killed at a random instant, then, before it is
started again on the same file:

1. Python's FileStorage opens the crashed file read-only;
2. ``zeod serve --test`` opens it (the recovery a restart does: an
   unfinished tail transaction is cut off into ``Data.fs.tr<n>``);
3. ``zeod check`` and Python's ``fstest`` find the recovered file clean;
4. against the journals (read from FileStorage, read-only):
   * every OK transaction is in the file under its tid, with exactly the
     objects and values its B line announced;
   * every ``crash`` transaction in the file was announced by a B line
     (OK, MAYBE, or still without outcome) and has all of its records;
   * every object's current value is from an announced transaction of its
     owner, not older than the owner's last OK write to that object.

Every ``--pack-every``-th round is a pack round: a separate client calls
``pack`` (at the time of an acknowledged transaction of an earlier round)
and the server is killed while the pack runs: at a random instant within
the last pack's duration, or within that time after ``Data.fs.pack``
appears. ``--ballast-mb`` of reachable data committed at the start makes
every pack copy that much, so that packs last long enough to be hit. Packing
removes superseded revisions older than the pack time, so for
transactions older than any pack time requested so far the checks above
accept records (or whole transactions) that are gone; every slot's current
value and everything after the pack time stay strict. A ``Data.fs.pack``
left by the kill is ignored at the restart and overwritten by the next
pack, as Python's FileStorage does.

Exit status 0 only if every round passed; the last line gives the rounds
survived and the transactions verified.
"""
import argparse
import io
import logging
import os
import pickle
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VALUE = re.compile(r"^c(\d+):s(\d+)$")
DESCRIPTION = re.compile(rb"^crash c(\d+) s(\d+)$")
# Records acknowledged in a round that are loaded back through the
# restarted server (all of them are checked in the file).
SERVED_SAMPLE = 300


def default_zeod():
    if os.environ.get("ZEOD_BIN"):
        return os.environ["ZEOD_BIN"]
    for profile in ("release", "debug"):
        path = os.path.join(ROOT, "target", profile, "zeod")
        if os.path.exists(path):
            return path
    return os.path.join(ROOT, "target", "release", "zeod")


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------- server

class Server:
    """``zeod serve`` on a fixed port and file, restarted after each kill."""

    def __init__(self, zeod, workdir, port):
        self.zeod = zeod
        self.workdir = workdir
        self.port = port
        self.path = os.path.join(workdir, "Data.fs")
        # Logs and the address file; may be moved off a small file system.
        self.log_dir = workdir
        self.proc = None
        self.starts = 0

    @property
    def addr_file(self):
        return os.path.join(self.log_dir, "address")

    def start(self, timeout=30):
        if os.path.exists(self.addr_file):
            os.unlink(self.addr_file)
        self.starts += 1
        out = open(os.path.join(self.log_dir, "server-%03d.log" % self.starts),
                   "wb")
        self.proc = subprocess.Popen(
            [self.zeod, "serve", "-a", "127.0.0.1:%d" % self.port,
             "-f", self.path, "--address-file", self.addr_file],
            stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("zeod exited with %s at start %d (see %s)"
                                   % (self.proc.returncode, self.starts,
                                      out.name))
            if os.path.exists(self.addr_file):
                return
            time.sleep(0.05)
        raise RuntimeError("zeod did not listen within %ss" % timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- clients

def client_main(args):
    """One committing client process (``--client N``)."""
    import transaction
    import ZODB
    from ZEO.ClientStorage import ClientStorage

    me = args.client
    stop_file = os.path.join(args.workdir, "stop")
    journal = open(os.path.join(args.workdir, "journal-%d" % me), "a")

    logging.basicConfig(level=logging.WARNING)

    def record(line):
        journal.write(line + "\n")
        journal.flush()
        os.fsync(journal.fileno())

    # Opening the DB loads the root: a kill then is no reason to give up.
    while True:
        storage = ClientStorage(("127.0.0.1", args.port), wait_timeout=10,
                                min_disconnect_poll=0.1,
                                max_disconnect_poll=0.5)
        try:
            db = ZODB.DB(storage)
            break
        except Exception:
            storage.close()
            if os.path.exists(stop_file):
                return 0
            time.sleep(0.2)
    open(os.path.join(args.workdir, "ready-%d" % me), "w").close()
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    rnd = random.Random(args.seed * 1000 + me)
    seq = 0
    while not os.path.exists(stop_file):
        seq += 1
        announced = False
        try:
            tm.begin()
            slots = conn.root()["crash"][str(me)]["slots"]
            chosen = sorted(rnd.sample(range(len(slots)),
                                       rnd.randint(1, len(slots))))
            value = "c%d:s%d" % (me, seq)
            for k in chosen:
                slots[k]["v"] = value
            oids = ",".join(slots[k]._p_oid.hex() for k in chosen)
            tm.get().note("crash c%d s%d" % (me, seq))
            record("B %d %s" % (seq, oids))
            announced = True
            tm.commit()
            record("OK %d %s" % (seq, slots[chosen[0]]._p_serial.hex()))
        except Exception as e:
            if announced:
                why = ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")
                record("MAYBE %d %s" % (seq, why[:200]))
            try:
                tm.abort()
            except Exception:
                pass
            time.sleep(0.05)
    try:
        db.close()
    except Exception:
        pass
    return 0


def setup_database(port, clients, slots, ballast_mb=0):
    import transaction
    import ZODB
    from persistent.mapping import PersistentMapping
    from ZEO.ClientStorage import ClientStorage

    db = ZODB.DB(ClientStorage(("127.0.0.1", port), wait_timeout=30))
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    root = conn.root()
    crash = PersistentMapping()
    for i in range(clients):
        crash[str(i)] = PersistentMapping(
            slots=[PersistentMapping(v="c%d:s0" % i) for _ in range(slots)])
    root["crash"] = crash
    tm.get().note("crash setup")
    tm.commit()
    # Reachable bulk that every pack must copy, so that a pack lasts long
    # enough to be killed in its middle.
    if ballast_mb:
        root["ballast"] = ballast = PersistentMapping()
        for i in range(ballast_mb * 4):
            ballast[i] = PersistentMapping(data=os.urandom(256 * 1024))
            if i % 16 == 15:
                tm.get().note("crash ballast")
                tm.commit()
        tm.get().note("crash ballast")
        tm.commit()
    owners = {}
    for i in range(clients):
        for obj in crash[str(i)]["slots"]:
            owners[obj._p_oid] = i
    db.close()
    return owners


# ---------------------------------------------------------------- checks

class Journal:
    def __init__(self):
        self.announced = {}   # seq -> set of oids (bytes)
        self.ok = {}          # seq -> tid (bytes)
        self.maybe = {}       # seq -> error text

    @classmethod
    def read(cls, path):
        j = cls()
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # being written right now
                kind, seq, rest = (line.rstrip("\n").split(" ", 2) + [""])[:3]
                seq = int(seq)
                if kind == "B":
                    j.announced[seq] = {bytes.fromhex(o)
                                        for o in rest.split(",")}
                elif kind == "OK":
                    j.ok[seq] = bytes.fromhex(rest)
                elif kind == "MAYBE":
                    j.maybe[seq] = rest
        return j


def decode_value(data):
    """The ``v`` value of a slot's data record (two pickles: class, state)."""
    u = pickle.Unpickler(io.BytesIO(data))
    u.persistent_load = lambda ref: ref
    u.load()
    state = u.load()
    found = []

    def walk(x):
        if isinstance(x, str) and VALUE.match(x):
            found.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(state)
    if len(found) != 1:
        raise AssertionError("cannot find the slot value in %r" % (state,))
    m = VALUE.match(found[0])
    return int(m.group(1)), int(m.group(2))


def run(cmd, timeout=300):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def tid_time(tid):
    from ZODB.TimeStamp import TimeStamp
    return TimeStamp(tid).timeTime()


def check_round(server, owners, nclients, stats):
    """All offline checks of one round; returns a list of failures."""
    from ZODB.FileStorage import FileStorage

    # Transactions before this (seconds) may have been packed.
    floor = stats.get("pack_floor", 0.0)

    failures = []
    path = server.path

    # 1. Python opens the crashed file as it is.
    try:
        fs = FileStorage(path, read_only=True)
        fs.close()
    except Exception as e:
        failures.append("Python FileStorage cannot open the crashed file "
                        "read-only: %r" % e)

    # 2. zeod's own open-time recovery.
    rc, out = run([server.zeod, "serve", "-a", "127.0.0.1:0", "-f", path,
                   "--test"])
    if rc != 0:
        failures.append("zeod serve --test failed (%d): %s" % (rc, out[-2000:]))
        return failures

    # 3. Both checkers.
    rc, out = run([server.zeod, "check", path])
    if rc != 0:
        failures.append("zeod check failed (%d): %s" % (rc, out[-2000:]))
    rc, out = run([sys.executable, "-m", "ZODB.scripts.fstest", path])
    if rc != 0:
        failures.append("fstest failed (%d): %s" % (rc, out[-2000:]))

    # 4. The journals against the file.
    journals = {}
    for i in range(nclients):
        jpath = os.path.join(server.workdir, "journal-%d" % i)
        journals[i] = Journal.read(jpath) if os.path.exists(jpath) else Journal()

    fs = FileStorage(path, read_only=True)
    try:
        in_file = {}  # (client, seq) -> (tid, {oid: (client, seq)})
        for t in fs.iterator():
            m = DESCRIPTION.match(t.description)
            if not m:
                continue
            key = (int(m.group(1)), int(m.group(2)))
            records = {}
            for r in t:
                records[r.oid] = decode_value(r.data) if r.data else None
            if key in in_file:
                failures.append("transaction %s twice in the file" % (key,))
            in_file[key] = (t.tid, records)

        for (client, seq), (tid, records) in in_file.items():
            j = journals.get(client)
            if j is None or seq not in j.announced:
                failures.append("c%d s%d (tid %s) in the file but never "
                                "announced" % (client, seq, tid.hex()))
                continue
            packed = tid_time(tid) < floor
            if packed and set(records) <= j.announced[seq]:
                pass  # superseded revisions packed away
            elif set(records) != j.announced[seq]:
                failures.append(
                    "c%d s%d (tid %s) is half there: records %s, announced %s"
                    % (client, seq, tid.hex(), sorted(o.hex() for o in records),
                       sorted(o.hex() for o in j.announced[seq])))
            bad = {o.hex(): v for o, v in records.items()
                   if v != (client, seq)}
            if bad:
                failures.append("c%d s%d (tid %s) has foreign values %s"
                                % (client, seq, tid.hex(), bad))

        verified = 0
        stats["packed_away"] = 0
        last_ok_write = {}  # oid -> seq of the owner's last OK write
        seen = stats.setdefault("seen", set())
        new_ok = []  # (oid, tid, value) of OK records first seen now
        current = {}  # oid -> (serial, data) of each slot
        for client, j in journals.items():
            for seq, tid in j.ok.items():
                got = in_file.get((client, seq))
                if got is None and tid_time(tid) < floor:
                    # Every revision it wrote was superseded and packed.
                    stats["packed_away"] = stats.get("packed_away", 0) + 1
                    for oid in j.announced.get(seq, ()):
                        last_ok_write[oid] = max(last_ok_write.get(oid, 0),
                                                 seq)
                    continue
                if got is None:
                    failures.append("LOST: c%d s%d acknowledged with tid %s "
                                    "is not in the file" % (client, seq,
                                                            tid.hex()))
                    continue
                if got[0] != tid:
                    failures.append("c%d s%d acknowledged with tid %s is in "
                                    "the file under %s" % (client, seq,
                                                           tid.hex(),
                                                           got[0].hex()))
                verified += 1
                if (client, seq) not in seen:
                    seen.add((client, seq))
                    new_ok += [(oid, tid, (client, seq)) for oid in got[1]]
                for oid in j.announced.get(seq, ()):
                    last_ok_write[oid] = max(last_ok_write.get(oid, 0), seq)

        for oid, owner in owners.items():
            try:
                data, serial = fs.load(oid)
            except Exception as e:
                failures.append("slot %s does not load: %r" % (oid.hex(), e))
                continue
            current[oid] = (serial, data)
            client, seq = decode_value(data)
            if client != owner:
                failures.append("slot %s of c%d holds c%d's value"
                                % (oid.hex(), owner, client))
                continue
            if seq < last_ok_write.get(oid, 0):
                failures.append(
                    "slot %s holds c%d s%d, older than the acknowledged s%d"
                    % (oid.hex(), client, seq, last_ok_write[oid]))
            if seq and seq not in journals[client].announced:
                failures.append("slot %s holds unannounced c%d s%d"
                                % (oid.hex(), client, seq))
        stats["verified"] = verified
        stats["in_file"] = len(in_file)
        stats["maybe"] = sum(len(j.maybe) for j in journals.values())
        stats["maybe_present"] = sum(
            1 for c, j in journals.items() for s in j.maybe
            if (c, s) in in_file)
        stats["ok"] = sum(len(j.ok) for j in journals.values())
        stats["ok_tids"] = [tid for j in journals.values()
                            for tid in j.ok.values()]
        stats["new_ok"] = new_ok
        stats["current"] = current
        stats["last_tid"] = fs.lastTransaction()
    finally:
        fs.close()
    return failures


def check_served(server, stats):
    """After the restart, through the server itself (its recovered index,
    not Python's reading of the file): each slot's current revision and
    every record of the transactions acknowledged since the last round
    load with the same bytes. Clients commit meanwhile, so only exact
    revisions are compared."""
    from ZEO.ClientStorage import ClientStorage
    from ZODB.utils import p64, u64

    failures = []
    storage = ClientStorage(("127.0.0.1", server.port), wait_timeout=30)
    try:
        if storage.lastTransaction() < stats["last_tid"]:
            failures.append("served last tid %s is older than the file's %s"
                            % (storage.lastTransaction().hex(),
                               stats["last_tid"].hex()))
        for oid, (serial, data) in stats["current"].items():
            got = storage.loadBefore(oid, p64(u64(serial) + 1))
            if got is None or got[0] != data or got[1] != serial:
                failures.append("served slot %s at %s differs from the file"
                                % (oid.hex(), serial.hex()))
        # A sample: loading every record through ZEO would take longer than
        # the clients take to commit new ones.
        sample = stats["new_ok"]
        if len(sample) > SERVED_SAMPLE:
            sample = random.Random(len(sample)).sample(sample, SERVED_SAMPLE)
        for oid, tid, value in sample:
            got = decode_value(storage.loadSerial(oid, tid))
            if got != value:
                failures.append("served %s at %s is c%d s%d, not c%d s%d"
                                % ((oid.hex(), tid.hex()) + got + value))
        stats["served_loads"] = (stats.get("served_loads", 0)
                                 + len(stats["current"]) + len(sample))
    finally:
        storage.close()
    return failures


def pack_and_kill(server, rnd, stats):
    """Starts a pack from its own client and kills the server during it.
    Returns what happened, for the round's log line."""
    import threading

    from ZEO.ClientStorage import ClientStorage

    tids = stats.get("ok_tids") or []
    if not tids:
        return "no acknowledged transaction to pack at yet"
    # A recent one mostly, so that most packs have history to remove.
    recent = sorted(tids)[len(tids) // 2:]
    pack_time = tid_time(rnd.choice(recent))
    # Transactions up to a second past the pack time may lose revisions.
    stats["pack_floor"] = max(stats.get("pack_floor", 0.0), pack_time + 1.0)
    result = {}

    def packer():
        storage = None
        try:
            storage = ClientStorage(("127.0.0.1", server.port),
                                    wait_timeout=10)
            t0 = time.monotonic()
            storage.pack(pack_time)
            result["seconds"] = time.monotonic() - t0
        except Exception as e:
            result["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            if storage is not None:
                try:
                    storage.close()
                except Exception:
                    pass

    pack_file = server.path + ".pack"
    over_leftover = os.path.exists(pack_file)

    def stamp():
        try:
            st = os.stat(pack_file)
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return None

    leftover = stamp()
    thread = threading.Thread(target=packer, daemon=True)
    thread.start()
    if rnd.random() < 0.5:
        how = "within the pack's duration"
        time.sleep(rnd.uniform(0, 1.3 * stats.get("pack_seconds", 0.5)))
    else:
        how = "once Data.fs.pack appeared"
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            now = stamp()
            if now is not None and now != leftover:
                break
            time.sleep(0.001)
        # Anywhere in the copy, the catch-up and the swap.
        time.sleep(rnd.uniform(0, stats.get("pack_seconds", 0.5)))
    server.kill()
    thread.join(60)
    if "seconds" in result:
        stats["pack_seconds"] = result["seconds"]
        stats["packs_finished"] = stats.get("packs_finished", 0) + 1
        outcome = "pack finished (%.2f s) before the kill" % result["seconds"]
        if over_leftover:
            # The Data.fs.pack an earlier kill left was simply overwritten.
            stats["packs_over_leftover"] = stats.get(
                "packs_over_leftover", 0) + 1
            outcome += " over a leftover Data.fs.pack"
    else:
        stats["packs_killed"] = stats.get("packs_killed", 0) + 1
        outcome = "killed %s" % how
    if os.path.exists(pack_file):
        stats["pack_leftovers"] = stats.get("pack_leftovers", 0) + 1
        outcome += ", Data.fs.pack left (%d bytes)" % os.path.getsize(pack_file)
    return "pack at %s: %s" % (time.strftime("%H:%M:%S",
                                             time.gmtime(pack_time)), outcome)


def ok_count(workdir, nclients):
    n = 0
    for i in range(nclients):
        p = os.path.join(workdir, "journal-%d" % i)
        if os.path.exists(p):
            with open(p) as f:
                n += sum(1 for line in f if line.startswith("OK "))
    return n


# ---------------------------------------------------------------- driver

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI mode: 20 rounds, 8 clients (1-2 minutes)")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--slots", type=int, default=4,
                    help="objects owned by each client")
    ap.add_argument("--min-commits", type=int, default=20,
                    help="acknowledged commits (all clients) between a "
                         "restart and the next kill, at least")
    ap.add_argument("--max-delay", type=float, default=1.5,
                    help="after that, kill within this many seconds")
    ap.add_argument("--pack-every", type=int, default=3,
                    help="every Nth round kills the server during a pack "
                         "(0: never)")
    ap.add_argument("--ballast-mb", type=int, default=16,
                    help="reachable data committed at the start, which "
                         "every pack copies (makes packs last)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--zeod", default=default_zeod())
    ap.add_argument("--workdir", default=None,
                    help="keep files here (default: a temporary directory, "
                         "removed on success)")
    # Internal: run as one client.
    ap.add_argument("--client", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.client is not None:
        return client_main(args)
    if args.quick:
        args.rounds = 20

    workdir = args.workdir or tempfile.mkdtemp(prefix="zeod-crash-")
    os.makedirs(workdir, exist_ok=True)
    rnd = random.Random(args.seed)
    log("crash torture: %d rounds, %d clients, seed %d, zeod %s, in %s"
        % (args.rounds, args.clients, args.seed, args.zeod, workdir))
    server = Server(args.zeod, workdir, free_port())
    clients = []
    survived = 0
    stats = {}
    failures = []
    started = time.monotonic()
    try:
        # ZODB's complaints (second-phase errors, ignored indexes) are
        # expected here; they go to a file, not the terminal.
        logging.basicConfig(filename=os.path.join(workdir, "python.log"),
                            level=logging.INFO)
        logfile = open(os.path.join(workdir, "clients.log"), "ab")
        server.start()
        owners = setup_database(server.port, args.clients, args.slots,
                                args.ballast_mb if args.pack_every else 0)
        for i in range(args.clients):
            clients.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--client", str(i),
                 "--port", str(server.port), "--workdir", workdir,
                 "--seed", str(args.seed)],
                stdout=logfile, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while not all(os.path.exists(os.path.join(workdir, "ready-%d" % i))
                      for i in range(args.clients)):
            if time.monotonic() > deadline:
                raise RuntimeError("clients not connected within 120 s")
            time.sleep(0.05)
        for rnd_no in range(1, args.rounds + 1):
            base = ok_count(workdir, args.clients)
            deadline = time.monotonic() + 60
            while ok_count(workdir, args.clients) < base + args.min_commits:
                dead = [c.args[3] for c in clients if c.poll() is not None]
                if dead:
                    raise RuntimeError("client(s) %s exited" % dead)
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "round %d: no progress: fewer than %d commits in 60 s "
                        "after the restart" % (rnd_no, args.min_commits))
                time.sleep(0.02)
            size_before = os.path.getsize(server.path)
            if args.pack_every and rnd_no % args.pack_every == 0:
                packing = "; " + pack_and_kill(server, rnd, stats)
                stats["pack_rounds"] = stats.get("pack_rounds", 0) + 1
            else:
                packing = ""
                time.sleep(rnd.uniform(0, args.max_delay))
                server.kill()
            round_failures = check_round(server, owners, args.clients, stats)
            trs = [f for f in os.listdir(workdir) if ".tr" in f]
            log("round %d: killed at %d bytes; %d acknowledged, %d verified, "
                "%d maybe (%d present), %d crash txns in file, %d tails cut%s"
                % (rnd_no, size_before, stats.get("ok", 0),
                   stats.get("verified", 0), stats.get("maybe", 0),
                   stats.get("maybe_present", 0), stats.get("in_file", 0),
                   len(trs), packing))
            if round_failures:
                failures += ["round %d: %s" % (rnd_no, f)
                             for f in round_failures]
                for f in round_failures[:20]:
                    log("FAIL " + f)
                break
            server.start()
            served_failures = check_served(server, stats)
            if served_failures:
                failures += ["round %d, after the restart: %s" % (rnd_no, f)
                             for f in served_failures]
                for f in served_failures[:20]:
                    log("FAIL " + f)
                break
            survived += 1
    except Exception:
        failures.append(traceback.format_exc())
        log("ERROR " + failures[-1])
    finally:
        open(os.path.join(workdir, "stop"), "w").close()
        if server.proc is None and not failures:
            try:
                server.start()
            except Exception:
                pass
        deadline = time.monotonic() + 30
        for c in clients:
            try:
                c.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
        server.stop()

    elapsed = time.monotonic() - started
    print("rounds survived: %d/%d; transactions verified: %d acknowledged "
          "(%d unknown-outcome, %d of them present); %d loads through the "
          "restarted server; %.0f s; seed %d"
          % (survived, args.rounds, stats.get("verified", 0),
             stats.get("maybe", 0), stats.get("maybe_present", 0),
             stats.get("served_loads", 0), elapsed, args.seed), flush=True)
    if stats.get("pack_rounds"):
        print("pack rounds: %d (killed during the pack: %d, pack finished "
              "first: %d, of which over a leftover Data.fs.pack: %d; "
              "Data.fs.pack left behind: %d); acknowledged transactions "
              "whose revisions were all packed away: %d"
              % (stats["pack_rounds"], stats.get("packs_killed", 0),
                 stats.get("packs_finished", 0),
                 stats.get("packs_over_leftover", 0),
                 stats.get("pack_leftovers", 0),
                 stats.get("packed_away", 0)), flush=True)
    if failures:
        print("FAILED; files kept in %s" % workdir)
        return 1
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
