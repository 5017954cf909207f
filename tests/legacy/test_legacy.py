"""A Python 2.7 ZEO 4 client and a ZEO 6 client on one zeod storage.

The old client runs in its own process (z4_worker.py in a Python 2.7 venv
of venv.sh): ZEO 4.3.1 with ZODB 4.4.5 (protocol Z4), and ZODB3 3.10.7,
Zope 2.13's ZODB (protocol Z3101). The ZEO 6 client runs in this process
(the venv of tests/python/venv.sh). ZODB3 3.10 cannot read what Python
3 ZODB writes (protocol-3 record pickles: a client limit, not a server
one), so its peer is the ZEO 4 client instead. What a site mid-migration relies on: each
sees the other's commits, write conflicts raise ConflictError, conflicts
the server can resolve (BTrees.Length) commit, and the old client comes
back after a server restart, quickly or by full cache verification.
"""
import json
import os
import subprocess
import sys
import time

import pytest
import transaction
from BTrees.Length import Length
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage
from ZODB import DB
from ZODB.POSException import ConflictError
from ZODB.utils import u64

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import zeod_forker  # noqa: E402
from app_worker import Values  # noqa: E402

# The old clients: protocol -> the python of its venv.
CLIENTS = {
    "Z4": os.environ.get("ZEOD_PYTHON27"),
    "Z3101": os.environ.get("ZEOD_PYTHON27_ZODB3"),
}
KEYS = ["k%02d" % i for i in range(10)]


class Z4:
    """The handle on one ZEO 4 client process."""

    def __init__(self, python, log_dir, name):
        self.name = name
        self.log = open(os.path.join(log_dir, "z4-%s.log" % name), "ab")
        self.process = subprocess.Popen(
            [python, os.path.join(HERE, "z4_worker.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

    def call(self, method, *args):
        self.process.stdin.write((json.dumps([method, args]) + "\n").encode())
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("ZEO 4 worker %s died (see %s)"
                               % (self.name, self.log.name))
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError("%s: %s: %s" % (self.name, reply["error"],
                                               reply["message"]))
        return reply["ok"]

    def stop(self):
        try:
            self.process.stdin.close()
            self.process.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(10)
        self.log.close()


class Z6(Values):
    """A ZEO 6 client in this process, same data model as z4_worker."""

    def __init__(self, addr):
        self.storage = ClientStorage(addr, wait_timeout=30,
                                     min_disconnect_poll=0.2,
                                     max_disconnect_poll=1)
        self.db = DB(self.storage)
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(self.tm)
        self.root = self.conn.root()

    def close(self):
        self.tm.abort()
        self.db.close()


@pytest.fixture
def setup(tmp_path, request):
    protocol = getattr(request, "param", "Z4")
    python = CLIENTS[protocol]
    if not python:
        pytest.fail("no Python 2.7 venv for %s clients (tests/legacy/run "
                    "sets ZEOD_PYTHON27 and ZEOD_PYTHON27_ZODB3)" % protocol)
    zeod_forker.current_test = "legacy-" + request.node.name.replace(
        "[", "-").rstrip("]")
    zeod_forker.current_logs = []
    (tmp_path / "server").mkdir()
    log_dir = zeod_forker.LOG_DIR
    os.makedirs(log_dir, exist_ok=True)
    opened = []

    def start(zeo_conf=None):
        server = zeod_forker.Restartable(str(tmp_path / "server"), zeo_conf)
        server.start()
        opened.append(server)
        return server

    def z4(server, name, cache=True):
        w = Z4(python, log_dir, "%s-%s" % (
            zeod_forker.current_test, name))
        opened.append(w)
        args = (list(server.addr), name, str(tmp_path)) if cache else (
            list(server.addr),)
        assert w.call("open", *args) == protocol
        w.protocol = protocol
        return w

    def z6(server):
        c = Z6(server.addr)
        opened.append(c)
        return c

    yield start, z4, z6
    for thing in reversed(opened):
        if isinstance(thing, Z4):
            thing.stop()
        elif isinstance(thing, Z6):
            thing.close()
        elif thing.stop:
            thing.stop()


def test_each_sees_the_others_commits(setup):
    start, z4, z6 = setup
    server = start()
    old = z4(server, "old")
    new = z6(server)
    old.call("create", KEYS)
    values = {k: 0 for k in KEYS}
    assert new.wait_for(values) == values
    # Python 2 str values arrive as bytes, unicode as text.
    old.call("write", KEYS[:3], "from zeo4")
    values.update({k: "from zeo4" for k in KEYS[:3]})
    assert new.wait_for(values) == values
    new.write(KEYS[2:6], "from zeo6 \u00e9")
    values.update({k: "from zeo6 \u00e9" for k in KEYS[2:6]})
    assert old.call("wait_for", values, 30) == values
    assert old.call("last_transaction") == u64(new.storage.lastTransaction())
    info = old.call("info")
    assert info["undo"] is True and info["len"] == len(KEYS) + 1


def test_write_conflicts_raise_conflict_error(setup):
    start, z4, z6 = setup
    server = start()
    old = z4(server, "old")
    new = z6(server)
    old.call("create", ["x"])
    assert new.wait_for({"x": 0}) == {"x": 0}
    # Both change x from the same state; the ZEO 6 client commits first.
    old.call("prepare", "x", "old")
    new.write(["x"], "new")
    assert old.call("commit").startswith("ConflictError")
    assert old.call("wait_for", {"x": "new"}, 30) == {"x": "new"}
    # The other way round: the ZEO 6 client loses.
    new.tm.begin()
    new.root["x"]["v"] = "new again"
    old.call("write", ["x"], "old again")
    with pytest.raises(ConflictError):
        new.tm.commit()
    new.tm.abort()
    assert new.wait_for({"x": "old again"}) == {"x": "old again"}
    # The server's own answer to a stale serial (not the client's local
    # check): ConflictError through serialnos, with oid, serials, class.
    raised = old.call("stale_store", "x")
    assert raised["error"] == "ConflictError"
    assert raised["serials"] == raised["expected_serials"]
    assert raised["class_name"] == "persistent.mapping.PersistentMapping"
    assert raised["oid"] == old.call("oids", ["x"])["x"]
    # And a missing object is a POSKeyError.
    assert old.call("load_missing")["error"] == "POSKeyError"


def test_conflicts_the_server_resolves_commit(setup):
    start, z4, z6 = setup
    server = start()
    old = z4(server, "old")
    new = z6(server)
    old.call("counter_create", "n")
    new.tm.begin()
    assert new.root["n"]() == 0
    new.tm.abort()
    for round_ in range(3):
        # The ZEO 4 client changes the counter, the ZEO 6 client commits a
        # change in between: the server merges (serialnos says b'rs').
        old.call("counter_prepare", "n", 1)
        new.tm.begin()
        new.root["n"].change(10)
        new.tm.commit()
        assert old.call("commit") == "committed"
        # And the ZEO 6 client resolves against a ZEO 4 commit.
        new.tm.begin()
        new.root["n"].change(100)
        old.call("counter_prepare", "n", 1000)
        assert old.call("commit") == "committed"
        new.tm.commit()
    expected = 3 * 1111
    assert old.call("counter_value", "n") in (expected, expected - 1000)
    deadline = time.monotonic() + 30
    while old.call("counter_value", "n") != expected:
        assert time.monotonic() < deadline, "ZEO 4 client never saw the total"
        time.sleep(0.05)
    new.tm.begin()
    assert new.root["n"]() == expected
    new.tm.abort()


def test_undo_from_the_zeo4_client(setup):
    start, z4, z6 = setup
    server = start()
    old = z4(server, "old")
    new = z6(server)
    old.call("create", ["u"])
    old.call("write", ["u"], "changed")
    assert new.wait_for({"u": "changed"}) == {"u": "changed"}
    old.call("undo_last_write")
    assert old.call("read", ["u"]) == {"u": 0}
    assert new.wait_for({"u": 0}) == {"u": 0}


def test_reconnects_after_a_server_restart(setup):
    start, z4, z6 = setup
    server = start()
    old = z4(server, "old")
    old.call("create", KEYS)
    values = {k: 0 for k in KEYS}
    assert old.call("read", KEYS) == values
    server.restart()
    assert old.call("wait_connected", 30)
    # The server answered getInvalidations from Data.fs: no verification.
    assert old.call("verify_results")[-1] in (
        "no verification", "quick verification"), old.call("verify_results")
    new = z6(server)
    new.write(KEYS[:4], "after restart")
    values.update({k: "after restart" for k in KEYS[:4]})
    assert old.call("wait_for", values, 30) == values
    old.call("write", KEYS[4:6], "old after restart")
    values.update({k: "old after restart" for k in KEYS[4:6]})
    assert new.wait_for(values) == values


def test_full_cache_verification_of_a_stale_persistent_cache(setup):
    start, z4, z6 = setup
    # Too short a queue to answer for what the old client missed, and no
    # reading back from the file (runzeo's behaviour): getInvalidations
    # answers None.
    server = start({"invalidation_queue_size": 1, "invalidation_age": "0"})
    old = z4(server, "old")
    old.call("create", KEYS)
    values = {k: 0 for k in KEYS}
    assert old.call("read", KEYS) == values
    oids = old.call("oids", KEYS)
    old.call("close")
    new = z6(server)
    for i, k in enumerate(KEYS[:3]):
        new.write([k], "while away %d" % i)
        values[k] = "while away %d" % i
    assert old.call("open", list(server.addr), "old",
                    os.path.dirname(server.directory)) == old.protocol
    assert old.call("wait_connected", 30)
    assert old.call("verify_results") == ["full verification"]
    # verify/invalidateVerify dropped exactly the changed objects.
    cached = old.call("cached", [oids[k] for k in KEYS])
    assert sorted(cached) == sorted(oids[k] for k in KEYS[3:])
    assert old.call("read", KEYS) == values


@pytest.mark.parametrize("setup", ["Z3101"], indirect=True)
def test_zodb3_client_beside_a_zeo4_client(setup):
    start, z4, z6 = setup
    server = start()
    old = z4(server, "zodb3")
    assert old.protocol == "Z3101"
    peer = Z4(CLIENTS["Z4"], zeod_forker.LOG_DIR, zeod_forker.current_test + "-peer")
    try:
        assert peer.call("open", list(server.addr)) == "Z4"
        old.call("create", KEYS)
        values = {k: 0 for k in KEYS}
        assert peer.call("wait_for", values, 30) == values
        peer.call("write", KEYS[:3], "from zeo4")
        values.update({k: "from zeo4" for k in KEYS[:3]})
        assert old.call("wait_for", values, 30) == values
        old.call("write", KEYS[3:5], "from zodb3")
        values.update({k: "from zodb3" for k in KEYS[3:5]})
        assert peer.call("wait_for", values, 30) == values
        # The ZEO 6 client reads what both wrote (protocol-1 records).
        new = z6(server)
        assert new.wait_for(values) == values
        # Conflicts: the server's own ConflictError, a local one, and a
        # BTrees.Length conflict the server merges.
        raised = old.call("stale_store", KEYS[0])
        assert raised["error"] == "ConflictError"
        assert raised["serials"] == raised["expected_serials"]
        old.call("prepare", KEYS[1], "zodb3")
        peer.call("write", [KEYS[1]], "zeo4 wins")
        assert old.call("commit").startswith("ConflictError")
        old.call("counter_create", "n")
        assert peer.call("counter_value", "n") == 0
        old.call("counter_prepare", "n", 1)
        peer.call("counter_prepare", "n", 10)
        assert peer.call("commit") == "committed"
        assert old.call("commit") == "committed"
        deadline = time.monotonic() + 30
        while peer.call("counter_value", "n") != 11:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # A bucket conflict between two Python 2 clients: the server's
        # merged bucket must be a Python 2 pickle both can load, with
        # str keys staying str.
        old.call("tree_create", "t")
        deadline = time.monotonic() + 30
        while True:
            try:
                peer.call("tree_items", "t")
                break
            except RuntimeError:
                assert time.monotonic() < deadline, "the tree never arrived"
                time.sleep(0.05)
        for i in range(3):
            old.call("tree_prepare", "t", "a%d" % i, i)
            peer.call("tree_prepare", "t", "b%d" % i, i)
            assert peer.call("commit") == "committed"
            assert old.call("commit") == "committed"
        want = {"items": {"%s%d" % (p, i): i for p in "ab" for i in range(3)},
                "key_types": ["str"]}
        assert old.call("tree_items", "t") == want
        deadline = time.monotonic() + 30
        while peer.call("tree_items", "t") != want:
            assert time.monotonic() < deadline, peer.call("tree_items", "t")
            time.sleep(0.05)
        # And back after a restart.
        server.restart()
        assert old.call("wait_connected", 30)
        assert old.call("verify_results")[-1] in (
            "no verification", "quick verification")
        assert peer.call("wait_connected", 30)
        peer.call("write", KEYS[5:7], "after restart")
        values.update({k: "after restart" for k in KEYS[5:7]})
        values[KEYS[1]] = "zeo4 wins"
        assert old.call("wait_for", values, 30) == values
    finally:
        peer.stop()
