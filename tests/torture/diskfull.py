"""Disk full: zeod serving a Data.fs on a 4 MB tmpfs that runs out of space.

Run as root with the pinned venv's python::

    python tests/torture/diskfull.py

1. A filler file takes part of the tmpfs; a ZEO client commits 64 KiB
   objects until a commit fails. The failure must reach the client as an
   error that names the cause (ENOSPC: "No space left on device"), not as
   a disconnect or a hang.
2. The server keeps running and serving: the failed commit's objects are
   absent, every acknowledged one loads, a second client connects, and
   further commits keep failing cleanly (several attempts, small and big).
3. ``zeod check`` and Python's ``fstest`` find the file clean while it is
   full.
4. The filler is deleted: commits work again, on the same connection.
   The server is then restarted while still full: it must stop on SIGTERM,
   leave a clean file, and start again with every acknowledged object.
5. After a restart (SIGTERM, then start on the same file) every
   acknowledged object loads with its value and both checkers are clean.

The tmpfs is unmounted in all cases. Exit status 0 only if all held.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from crash import Server, default_zeod, free_port, log, run  # noqa: E402

OBJECT_SIZE = 64 * 1024
OP_TIMEOUT = 60


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang("no answer from the server within %d s" % OP_TIMEOUT)


def bounded(fn, *args):
    """Runs fn(*args) but raises Hang if it takes longer than OP_TIMEOUT."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(OP_TIMEOUT)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)


def checkers(server):
    problems = []
    rc, out = run([server.zeod, "check", server.path])
    if rc != 0:
        problems.append("zeod check (%d): %s" % (rc, out[-1500:]))
    rc, out = run([sys.executable, "-m", "ZODB.scripts.fstest", server.path])
    if rc != 0:
        problems.append("fstest (%d): %s" % (rc, out[-1500:]))
    return problems


class Client:
    def __init__(self, port):
        import transaction
        import ZODB
        from ZEO.ClientStorage import ClientStorage

        self.db = ZODB.DB(ClientStorage(("127.0.0.1", port), wait_timeout=30))
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(self.tm)

    def commit(self, key, size):
        """root[key] = a new object of `size` random bytes; returns None (and
        keeps the bytes in self.last) or the exception."""
        from persistent.mapping import PersistentMapping

        data = os.urandom(size)
        try:
            self.tm.begin()
            self.conn.root()[key] = PersistentMapping(data=data)
            self.tm.commit()
            self.last = data
            return None
        except Exception as e:
            self.tm.abort()
            return e

    def load(self, key):
        self.tm.begin()
        try:
            obj = self.conn.root().get(key)
            return None if obj is None else obj["data"]
        finally:
            self.tm.abort()

    def close(self):
        self.db.close()


def scenario(server, mnt, written):
    failures = []
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (1024 * 1024))
    server.start()
    client = bounded(Client, server.port)

    # 1. Fill up.
    error = None
    for n in range(200):
        key = "k%03d" % n
        e = bounded(client.commit, key, OBJECT_SIZE)
        if e is None:
            written[key] = client.last
            continue
        error = e
        break
    if error is None:
        return ["200 commits of 64 KiB fit on a 4 MB tmpfs?"]
    text = "%s: %s" % (type(error).__name__, error)
    log("commit %d failed with %s" % (len(written) + 1, text[:300]))
    if "No space left on device" not in text and "ENOSPC" not in text:
        failures.append("the client's error does not say the disk is full: "
                        + text[:500])
    if server.proc.poll() is not None:
        return failures + ["the server exited (%s) on ENOSPC"
                           % server.proc.returncode]

    # 2. Still serving; more failing commits, small and big.
    for key, data in written.items():
        if bounded(client.load, key) != data:
            failures.append("acknowledged %s does not load" % key)
    other = bounded(Client, server.port)
    results = []
    for size in (OBJECT_SIZE, 16, 4 * OBJECT_SIZE, 1024):
        e = bounded(client.commit, "extra-%d" % size, size)
        results.append("ok" if e is None else type(e).__name__)
        if e is None:
            written["extra-%d" % size] = client.last
    log("further commits while full: %s" % results)
    if server.proc.poll() is not None:
        return failures + ["the server exited (%s) after more failing commits"
                           % server.proc.returncode]
    if bounded(other.load, "k000") is None:
        failures.append("a second client cannot read while the disk is full")
    other.close()

    # 3. The file is consistent while full.
    failures += ["while full: " + p for p in checkers(server)]

    # 3b. A restart while full (the index written at shutdown may not fit).
    client.close()
    server.proc.terminate()
    try:
        code = server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return failures + ["SIGTERM while the disk is full: no exit in 30 s"]
    server.proc = None
    log("SIGTERM while full: exit status %s" % code)
    failures += ["after a shutdown while full: " + p for p in checkers(server)]
    server.start()
    client = bounded(Client, server.port)
    bad = [k for k, data in written.items() if bounded(client.load, k) != data]
    if bad:
        failures.append("after a restart while full, keys missing or "
                        "different: %s" % bad)

    # 4. Space returns.
    os.unlink(filler)
    again = []
    for n in range(3):
        key = "after%d" % n
        e = bounded(client.commit, key, OBJECT_SIZE)
        if e is None:
            written[key] = client.last
        again.append(e)
    if any(e is not None for e in again):
        failures.append("commits still fail after space returned: %r" % again)
    else:
        log("3 commits of 64 KiB succeeded after the filler was deleted")
    client.close()

    # 5. Restart and reload everything.
    server.stop()
    failures += ["after restart: " + p for p in checkers(server)]
    server.start()
    client = bounded(Client, server.port)
    missing = [k for k, data in written.items()
               if bounded(client.load, k) != data]
    if missing:
        failures.append("after restart, acknowledged keys missing or "
                        "different: %s"
                        % missing)
    log("%d acknowledged commits load after the restart" % len(written))
    client.close()
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zeod", default=default_zeod())
    ap.add_argument("--size", default="4m", help="tmpfs size")
    args = ap.parse_args(argv)

    top = tempfile.mkdtemp(prefix="zeod-diskfull-")
    mnt = os.path.join(top, "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + args.size,
                    "tmpfs", mnt], check=True)
    server = Server(args.zeod, mnt, free_port())
    # Server logs outside the tmpfs, so they neither take its space nor
    # vanish with it.
    server.log_dir = top
    written = {}
    try:
        failures = scenario(server, mnt, written)
    except Exception:
        failures = [traceback.format_exc()]
    finally:
        server.kill()
        subprocess.run(["umount", mnt])
    for f in failures:
        log("FAIL " + f)
    print("disk full: %s; %d commits acknowledged (server logs in %s)"
          % ("FAILED" if failures else "ok", len(written), top), flush=True)
    if failures:
        return 1
    shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
