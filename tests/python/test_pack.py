"""Pack with real ZEO 6 clients and Python's FileStorage as the referee.

* A pack through ``zeod pack ADDR`` while 8 client processes commit and
  load: no client error, every committed transaction still there, the
  unreachable objects gone, the reachable ones loadable, and Python opens
  the packed file (fstest clean).
* Python 2 pickles (protocol 1, hand-assembled as py2 cPickle writes them):
  ``zeod pack --file`` keeps the same oids and records as Python's own
  FileStorage pack of a copy of the same file.
* ``zeod pack --file`` refuses a file a running server has locked, and
  ``-d`` keeps the history of the last days.

Run: ``$(bash tests/python/venv.sh) -m pytest tests/python/test_pack.py``
(``ZEOD_BIN`` names the binary, default ``target/release/zeod``).
"""
import multiprocessing
import os
import random
import shutil
import subprocess
import time
import traceback

import pytest
import transaction
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage
from ZODB import DB
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError
from ZODB.scripts import fstest
from ZODB.serialize import referencesf
from ZODB.utils import p64, u64

import zeod_forker

WORKERS = 8


def zeod(*args, timeout=300):
    return subprocess.run(
        [zeod_forker.ZEOD_BIN, *args], capture_output=True, text=True,
        timeout=timeout)


@pytest.fixture
def server(tmp_path, request):
    zeod_forker.current_test = request.node.name
    zeod_forker.current_logs = []
    directory = tmp_path / "server"
    directory.mkdir()
    old = os.getcwd()
    os.chdir(directory)
    dialect = zeod_forker.dialect
    zeod_forker.dialect = getattr(request, "param", "pickle")
    try:
        addr, stop = zeod_forker.start_external(keep=True)
    finally:
        zeod_forker.dialect = dialect
        os.chdir(old)
    yield addr, str(directory / "Data.fs"), stop
    stop()


def address(addr):
    return "%s:%d" % addr


# ---------------------------------------------------------------------------
# 8 clients committing and loading while the server packs

def client_worker(addr, n, live_oids, stop, progress, out):
    """Commits a new object into its own mapping and loads shared objects
    until told to stop; reports what it committed and any error."""
    committed, times, loads, error = [], [], 0, None
    try:
        # A tiny client cache: loads go to the server.
        storage = ClientStorage(addr, wait_timeout=30, cache_size=64 * 1024)
        db = DB(storage, cache_size=20)
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        rng = random.Random(n)
        i = 0
        while not stop.is_set():
            i += 1
            tm.begin()
            mine = conn.root()["w%d" % n]
            mine[i] = PersistentMapping(v=i, pad="p" * 200)
            tm.get().note("worker %d commit %d" % (n, i))
            tm.commit()
            committed.append(i)
            times.append(time.time())
            progress[n] = len(committed)
            for oid in rng.sample(live_oids, 5):
                storage.load(p64(oid))
                loads += 1
            conn.cacheMinimize()
        db.close()
    except Exception:
        error = traceback.format_exc()
    out.put((n, committed, times, loads, error))


def populate(addr):
    """A live part (with history) and a garbage part dropped from the root."""
    db = DB(ClientStorage(addr, wait_timeout=30))
    with db.transaction() as conn:
        root = conn.root()
        root["live"] = PersistentMapping(
            {i: PersistentMapping(v=i) for i in range(200)})
        root["garbage"] = PersistentMapping(
            {i: PersistentMapping(pad="g" * 500) for i in range(3000)})
        for n in range(WORKERS):
            root["w%d" % n] = PersistentMapping()
    for rev in range(3):
        with db.transaction() as conn:
            for obj in conn.root()["live"].values():
                obj["rev"] = rev
    with db.transaction() as conn:
        root = conn.root()
        live = [u64(o._p_oid) for o in root["live"].values()]
        live.append(u64(root["live"]._p_oid))
        garbage = [u64(o._p_oid) for o in root["garbage"].values()]
        garbage.append(u64(root["garbage"]._p_oid))
        del root["garbage"]
    db.close()
    return live, garbage


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def test_pack_while_8_clients_commit_and_load(server):
    addr, path, stop_server = server
    live, garbage = populate(addr)

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    progress = ctx.Array("i", WORKERS)
    out = ctx.Queue()
    procs = [ctx.Process(target=client_worker,
                         args=(addr, n, live, stop, progress, out))
             for n in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        wait_for(lambda: min(progress) >= 3, 120, "every client to commit")
        t0 = time.time()
        packed = zeod("pack", address(addr))
        t1 = time.time()
        assert packed.returncode == 0, packed.stderr
        assert "pack done" in packed.stderr
        after_pack = list(progress)
        wait_for(lambda: all(progress[n] >= after_pack[n] + 3
                             for n in range(WORKERS)),
                 120, "commits after the pack")
    finally:
        stop.set()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
    errors = [(n, e) for n, _, _, _, e in results if e]
    assert not errors, errors
    during = sum(1 for _, _, times, _, _ in results
                 for t in times if t0 <= t <= t1)
    print("pack took %.2fs; %d commits during the pack; %d loads in all"
          % (t1 - t0, during, sum(r[3] for r in results)))
    # Commits were served while the server packed.
    assert during > 0

    # Everything committed is there; the garbage is gone, live loads.
    db = DB(ClientStorage(addr, wait_timeout=30))
    storage = db.storage
    with db.transaction() as conn:
        root = conn.root()
        for n, committed, _, _, _ in results:
            mine = root["w%d" % n]
            assert sorted(mine.keys()) == committed
            for i in committed:
                assert mine[i]["v"] == i
    for oid in garbage:
        with pytest.raises(POSKeyError):
            storage.load(p64(oid))
    for oid in live:
        storage.load(p64(oid))
    db.close()
    stop_server()

    fstest.check(path)
    st = FileStorage(path, read_only=True)
    try:
        assert not set(garbage) & {u64(o) for o in st._index.keys()}
        # Every object reachable from the root loads, through references.
        seen, todo = set(), [p64(0)]
        while todo:
            oid = todo.pop()
            if oid in seen:
                continue
            seen.add(oid)
            data, _ = st.load(oid)
            todo.extend(referencesf(data))
        assert {u64(o) for o in seen} >= set(live)
        assert seen == set(st._index.keys())
    finally:
        st.close()


# ---------------------------------------------------------------------------
# Python 2 pickles, protocol 1: zeod's pack against Python's

PM = b"cpersistent.mapping\nPersistentMapping\n"


def p1_str(b):
    """py2 ``str`` as cPickle protocol 1 writes it: SHORT_BINSTRING."""
    assert len(b) < 256
    return b"U" + bytes([len(b)]) + b


def ref(oid, memo_class=None):
    """A persistent reference ``(oid, class)`` + BINPERSID; the class is
    fetched from the memo (BINGET) when already pickled, as cPickle does."""
    klass = b"h" + bytes([memo_class]) if memo_class else PM + b"q\x04"
    return b"(" + p1_str(p64(oid)) + klass + b"tQ"


def record(items):
    """A PersistentMapping record: class pickle, then state
    ``{'data': {k: v...}}`` with protocol 1 opcodes."""
    body = b"".join(p1_str(k) + v for k, v in items)
    state = (b"}q\x02" + p1_str(b"data") + b"}q\x03(" + body + b"us.")
    return PM + b"q\x01." + state


def store_txn(st, note, records):
    from ZODB.Connection import TransactionMetaData
    tm = TransactionMetaData("py2", note)
    st.tpc_begin(tm)
    for oid, data in records:
        try:
            serial = st.getTid(p64(oid))
        except POSKeyError:
            serial = None
        st.store(p64(oid), serial, data, "", tm)
    st.tpc_vote(tm)
    st.tpc_finish(tm)
    time.sleep(0.01)


def write_py2_database(path):
    st = FileStorage(path)
    store_txn(st, "T1", [
        (0, record([(b"a", ref(1)), (b"b", ref(2, memo_class=4))])),
        (1, record([(b"x", ref(3))])),
        (2, record([(b"n", b"K\x01")])),
        (3, record([(b"s", p1_str(b"ascii py2 str"))])),
        (4, record([])),  # never referenced
    ])
    store_txn(st, "T2 drops b, adds y and a weak ref", [
        (0, record([(b"a", ref(1))])),
        # Second reference in one pickle: class from the memo (BINGET).
        (1, record([(b"x", ref(3)), (b"y", ref(5, memo_class=4))])),
        # A bare oid string as persistent id, and a weak reference
        # ['w', (oid,)] that GC does not follow.
        (5, record([(b"z", p1_str(p64(3)) + b"Q"),
                    (b"w", b"(lq\x06" + p1_str(b"w") + b"a(" +
                     p1_str(p64(6)) + b"tq\x07aQ")])),
        (6, record([])),
        (2, record([(b"n", b"K\x02")])),
    ])
    store_txn(st, "T3 touches 3", [
        (3, record([(b"s", p1_str(b"changed"))])),
    ])
    st.close()


def records_of(path):
    st = FileStorage(path, read_only=True)
    try:
        oids = sorted(u64(o) for o in st._index.keys())
        recs = [(t.tid, t.status, [(u64(r.oid), r.data) for r in t])
                for t in st.iterator()]
    finally:
        st.close()
    return oids, recs


def test_py2_protocol1_pickles_pack_like_python(tmp_path):
    src = str(tmp_path / "src.fs")
    write_py2_database(src)
    (tmp_path / "py").mkdir()
    (tmp_path / "rs").mkdir()
    py, rs = str(tmp_path / "py" / "Data.fs"), str(tmp_path / "rs" / "Data.fs")
    shutil.copy(src, py)
    shutil.copy(src, rs)

    st = FileStorage(py)
    st.pack(time.time(), referencesf)
    st.close()
    result = zeod("pack", "--file", rs)
    assert result.returncode == 0, result.stderr

    py_oids, py_recs = records_of(py)
    rs_oids, rs_recs = records_of(rs)
    # The weakly referenced 6, the dropped 2 and the never referenced 4
    # are gone; the bare-oid and memo-class references kept 3 and 5.
    assert py_oids == [0, 1, 3, 5]
    assert rs_oids == py_oids
    assert rs_recs == py_recs
    fstest.check(rs)
    with open(py, "rb") as a, open(rs, "rb") as b:
        assert a.read() == b.read()


def test_py2_non_ascii_str_fails_gc_like_python(tmp_path):
    """A py2 ``str`` with non-ASCII bytes in a reachable object: Python 3
    ZODB's referencesf cannot decode it, so Python's GC pack fails. zeod
    must not lose anything either way: it reads the persistent ids without
    decoding strings, so it packs, keeping the object."""
    src = str(tmp_path / "src.fs")
    st = FileStorage(src)
    store_txn(st, "T1", [(0, record([(b"c", ref(1))])),
                         (1, record([(b"raw", p1_str(b"\xff\x00bin"))])),
                         (2, record([]))])
    store_txn(st, "T2", [(0, record([(b"c", ref(1))]))])
    st.close()
    (tmp_path / "py").mkdir()
    (tmp_path / "rs").mkdir()
    py, rs = str(tmp_path / "py" / "Data.fs"), str(tmp_path / "rs" / "Data.fs")
    shutil.copy(src, py)
    shutil.copy(src, rs)

    st = FileStorage(py)
    with pytest.raises(UnicodeDecodeError):
        st.pack(time.time(), referencesf)
    st.close()
    with open(src, "rb") as a, open(py, "rb") as b:
        assert a.read() == b.read(), "Python's failed pack changed the file"

    result = zeod("pack", "--file", rs)
    assert result.returncode == 0, result.stderr
    oids, recs = records_of(rs)
    assert oids == [0, 1]
    # T1's root revision went; the rest is T1's child and T2's root.
    assert [[oid for oid, _ in r] for _, _, r in recs] == [[1], [0]]
    fstest.check(rs)


# ---------------------------------------------------------------------------
# The built-in schedule

def start_scheduled(tmp_path, request, every):
    """A zeod serving tmp_path/Data.fs that packs it to now every ``every``:
    (address, stop)."""
    if zeod_forker.SERVER != "zeod":
        pytest.skip("pack-schedule is zeod's")
    zeod_forker.current_test = request.node.name
    zeod_forker.current_logs = []
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        return zeod_forker.start_external(
            storage_conf="<filestorage 1>\npath Data.fs\n"
                         "pack-schedule %s\npack-days 0\n</filestorage>"
            % every,
            keep=True)
    finally:
        os.chdir(old)


def test_scheduled_pack_runs_while_serving(tmp_path, request):
    addr, stop = start_scheduled(tmp_path, request, "3s")
    try:
        live, garbage = populate(addr)
        db = DB(ClientStorage(addr, wait_timeout=30))

        def garbage_gone():
            # Keep committing meanwhile: the schedule packs a live server.
            with db.transaction() as conn:
                conn.root()["w0"][len(conn.root()["w0"])] = 1
            # A fresh client: ZEO clients keep packed-away objects cached.
            fresh = ClientStorage(addr, wait_timeout=30)
            try:
                fresh.load(p64(garbage[0]))
            except POSKeyError:
                return True
            finally:
                fresh.close()
            return False

        wait_for(garbage_gone, 60, "the scheduled pack")
        db.close()
        db = DB(ClientStorage(addr, wait_timeout=30))
        for oid in garbage:
            with pytest.raises(POSKeyError):
                db.storage.load(p64(oid))
        for oid in live:
            db.storage.load(p64(oid))
        db.close()
    finally:
        stop()
    log = open(zeod_forker.current_logs[-1]).read()
    assert "pack schedule active" in log
    assert "scheduled pack finished" in log
    fstest.check(str(tmp_path / "Data.fs"))


# ---------------------------------------------------------------------------
# What connected clients hear after a pack: ZEO's server sends every client
# of the storage ``info`` with the new size and length (StorageServer's
# ``_pack_impl`` → ``broadcast_info``), which is what their ``getSize()``
# and ``len()`` return.  The watcher connects before anything is committed
# and never commits, so nothing but that message can tell it the size.

def watch_a_pack(addr, path, pack=None):
    """``pack=None``: the server's schedule packs, at any time."""
    watcher = ClientStorage(addr, wait_timeout=30)
    try:
        initial = watcher.getSize()
        live, garbage = populate(addr)
        before = os.path.getsize(path)
        if pack:
            assert watcher.getSize() == initial, "info without a pack"
            pack()

        # What survives: the live objects and their mapping (``live``),
        # the workers' mappings and the root.
        survivors = len(live) + WORKERS + 1

        def told():
            # A scheduled pack may start before the garbage was dropped
            # (its pack time is its start); wait for one that came after.
            size = watcher.getSize()
            return (size != initial and size == os.path.getsize(path)
                    and len(watcher) == survivors)

        wait_for(told, 60, "info with the size of the packed file")
        if pack:
            assert watcher.getSize() < before
        # The length is the object count of the packed storage.
        st = FileStorage(path, read_only=True)
        try:
            assert len(st) == survivors
        finally:
            st.close()
    finally:
        watcher.close()


@pytest.mark.parametrize("how", ["cli", "rpc"])
def test_clients_hear_the_new_size_after_a_pack(server, how):
    addr, path, _ = server

    def pack():
        if how == "cli":
            packed = zeod("pack", address(addr))
            assert packed.returncode == 0, packed.stderr
        else:
            packer = ClientStorage(addr, wait_timeout=30)
            try:
                packer.pack(time.time(), referencesf)
            finally:
                packer.close()

    watch_a_pack(addr, path, pack)


def test_clients_hear_the_new_size_after_a_scheduled_pack(tmp_path, request):
    addr, stop = start_scheduled(tmp_path, request, "2s")
    try:
        # The schedule packs by itself; the first pack after the garbage
        # was dropped tells the watcher the new size.
        watch_a_pack(addr, str(tmp_path / "Data.fs"))
    finally:
        stop()


# ---------------------------------------------------------------------------
# The CLI against a server and a locked file

@pytest.mark.parametrize("server", ["pickle", "msgpack"], indirect=True)
def test_cli_refuses_a_locked_file_and_keeps_days(server):
    addr, path, _ = server
    live, garbage = populate(addr)
    locked = zeod("pack", "--file", path)
    assert locked.returncode != 0
    assert "locked" in locked.stderr and "zeod pack HOST:PORT" in locked.stderr

    size = os.path.getsize(path)
    kept = zeod("pack", address(addr), "-d", "1")
    assert kept.returncode == 0, kept.stderr
    assert os.path.getsize(path) == size, "-d 1 removed today's history"

    packed = zeod("pack", address(addr), "-S", "1")
    assert packed.returncode == 0, packed.stderr
    assert os.path.getsize(path) < size

    wrong = zeod("pack", address(addr), "-S", "nosuch")
    assert wrong.returncode != 0

    db = DB(ClientStorage(addr, wait_timeout=30))
    for oid in garbage[:50]:
        with pytest.raises(POSKeyError):
            db.storage.load(p64(oid))
    for oid in live:
        db.storage.load(p64(oid))
    db.close()
