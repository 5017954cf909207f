"""A ZEO 6 client's persistent cache survives a storage-node restart.

Client A fills its persistent cache (`client=`/`var=`) and stops; client B
commits 1,000 transactions (changing 50 of A's 300 objects); the server
restarts, so its in-memory invalidation queue holds only the last 100
transactions. A reconnects with its cache file:

* zeod answers A's `getInvalidations` by scanning the Data.fs back from its
  end: A keeps its cache ("quick verification"), loads only the 50 changed
  objects from the server, and sees B's last values, never stale ones;
* with `invalidation-max-oids` below the 50 changed objects, zeod answers
  None and A drops its cache, as it should beyond the bound;
* Python's runzeo with default settings answers None: A drops its cache and
  loads all 300 objects again.

Each case prints one summary line to the test output, whatever the outcome.

Run: `$(bash tests/python/venv.sh) -m pytest tests/python/test_cache_survival.py`
(ZEOD_BIN names the zeod binary; default target/release/zeod, else debug).
"""
import logging
import os
import socket
import subprocess
import sys
import time

import pytest
import transaction
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage
from ZODB import DB

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

OBJECTS = 300
CHANGED = 50
COMMITS = 1000


def zeod_bin():
    env = os.environ.get("ZEOD_BIN")
    if env:
        return env
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "zeod")
        if os.path.exists(p):
            return p
    raise RuntimeError("no zeod binary; run cargo build")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """zeod serve or runzeo on one Data.fs, restartable."""

    def __init__(self, kind, data, log_path, env=None):
        self.kind, self.data, self.log_path = kind, data, log_path
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def start(self):
        self.port = free_port()
        addr = "127.0.0.1:%d" % self.port
        if self.kind == "zeod":
            cmd = [zeod_bin(), "serve", "-a", addr, "-f", self.data]
        else:
            cmd = [sys.executable, "-m", "ZEO.runzeo", "-a", addr, "-f", self.data]
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.time() + 30
        while True:
            assert self.proc.poll() is None, "server exited: see %s" % self.log_path
            assert time.time() < deadline, "server did not start"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return ("127.0.0.1", self.port)
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None
        self.log.close()


class Loads:
    """Counts the objects a ClientStorage loads from the server."""

    def __init__(self, storage):
        self.count = 0
        server = storage._server
        original = server.load_before

        def counting(oid, tid):
            self.count += 1
            return original(oid, tid)
        server.load_before = counting


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append("%s %s" % (record.levelname, record.getMessage()))


def client_a(addr, var):
    return ClientStorage(addr, client="A", var=var, cache_size=64 << 20,
                         wait_timeout=30)


def verify_result(storage):
    # The ZEO 6 client's own record of how verification went.
    return getattr(storage._server.client, "verify_result", None)


CASES = {
    "zeod": ("zeod", {}, True),
    "zeod-max-oids-50": ("zeod", {"ZEOD_INVALIDATION_MAX_OIDS": str(CHANGED)}, True),
    "zeod-max-oids-49": ("zeod", {"ZEOD_INVALIDATION_MAX_OIDS": str(CHANGED - 1)}, False),
    "runzeo-defaults": ("runzeo", {}, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_persistent_cache_across_server_restart(case, tmp_path, capsys):
    kind, env, kept = CASES[case]
    var = str(tmp_path / "var")
    os.makedirs(var)
    server = Server(kind, str(tmp_path / "Data.fs"), str(tmp_path / "server.log"), env)
    addr = server.start()
    try:
        # A: create the objects; a commit puts them in A's cache.
        db = DB(client_a(addr, var))
        with db.transaction() as conn:
            root = conn.root()
            for i in range(OBJECTS):
                root["o%d" % i] = PersistentMapping(v=0)
        with db.transaction() as conn:
            assert sum(conn.root()["o%d" % i]["v"] for i in range(OBJECTS)) == 0
        db.close()
        assert any(n.endswith(".zec") for n in os.listdir(var)), "no persistent cache file"

        # B: 1,000 commits while A is away, each to one of the first 50.
        db = DB(ClientStorage(addr, wait_timeout=30))
        for n in range(COMMITS):
            with db.transaction() as conn:
                conn.root()["o%d" % (n % CHANGED)]["v"] = n + 1
        db.close()
        expected = {i: 0 for i in range(OBJECTS)}
        for n in range(COMMITS):
            expected[n % CHANGED] = n + 1

        server.stop()
        addr = server.start()

        records = Records()
        zeo_log = logging.getLogger("ZEO")
        zeo_log.addHandler(records)
        try:
            storage = client_a(addr, var)
        finally:
            zeo_log.removeHandler(records)
        result = verify_result(storage)
        loads = Loads(storage)
        db = DB(storage)
        try:
            with db.transaction() as conn:
                root = conn.root()
                seen = {i: root["o%d" % i]["v"] for i in range(OBJECTS)}
        finally:
            db.close()
        stale = sorted(i for i in seen if seen[i] != expected[i])
        with capsys.disabled():
            print("\n  %-17s client A after %d commits and a server restart: "
                  "verification %r, %d of %d objects loaded from the server, %d stale"
                  % (case, COMMITS, result, loads.count, OBJECTS + 1, len(stale)))
            for line in records.lines:
                if "verif" in line or "cache" in line:
                    print("  %-17s   client log: %s" % (case, line))
        assert not stale, "stale objects: %s" % stale[:10]
        if kept:
            assert result == "quick verification", records.lines
            # The 50 changed objects, nothing else (the root is unchanged).
            assert loads.count == CHANGED, loads.count
        else:
            assert result == "cache too old, clearing", records.lines
            assert any("dropping stale cache" in l for l in records.lines)
            assert loads.count >= OBJECTS, loads.count
    finally:
        server.stop()
    if kind == "zeod":
        with open(server.log_path) as f:
            log = f.read()
        word = "client cache kept" if kept else "client must drop its cache"
        assert word in log, log[-3000:]
        with capsys.disabled():
            for line in log.splitlines():
                if word in line:
                    print("  %-17s   server log: %s" % (case, line.strip()[:300]))
