# -*- coding: utf-8 -*-
"""A ZEO 4 client (Python 2.7) driven line by line from a test.

Reads one JSON command per line on stdin, answers one JSON line on stdout:
``{"ok": result}`` or ``{"error": "ClassName", "message": "...", ...}``.
Runs under the venv of tests/legacy/venv.sh (ZEO 4.3.1, ZODB 4.4.5); the
test (tests/legacy/test_legacy.py, Python 3) drives a ZEO 6 client beside
it on the same storage.

Values are kept in the database root: ``root[key] = value`` for plain
values, ``root[key] = BTrees.Length.Length(n)`` for counters (whose
conflicts the server resolves).
"""
from __future__ import print_function

import json
import logging
import os
import sys
import time
import traceback

import BTrees.Length
import transaction
import ZEO.ClientStorage
import ZODB
import ZODB.POSException
from persistent.mapping import PersistentMapping
from ZODB.utils import p64, u64, z64

logging.basicConfig(
    level=logging.WARNING, stream=sys.stderr,
    format="z4_worker %(levelname)s %(name)s: %(message)s")


class Worker(object):

    def __init__(self):
        self.storage = None
        self.db = None
        self.conn = None
        self.tm = None

    # -- connection ------------------------------------------------------

    def open(self, addr, storage="1", cache_dir=None, client=None,
             wait=30):
        kw = dict(storage=str(storage), wait_timeout=wait, wait=True,
                  min_disconnect_poll=0.5, max_disconnect_poll=1)
        if client:
            kw.update(client=str(client), var=str(cache_dir))
        self.storage = ZEO.ClientStorage.ClientStorage(
            (str(addr[0]), int(addr[1])), **kw)
        self.db = ZODB.DB(self.storage)
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(self.tm)
        return {"protocol": self.storage._connection.peer_protocol_version
                .decode("ascii")}

    def close(self):
        if self.db is not None:
            self.tm.abort()
            self.conn.close()
            self.db.close()
        self.db = self.conn = self.storage = None
        return None

    def connected(self):
        return bool(self.storage.is_connected())

    def wait_connected(self, timeout=30):
        deadline = time.time() + timeout
        while not self.storage.is_connected():
            if time.time() > deadline:
                raise RuntimeError("not reconnected in %ss" % timeout)
            time.sleep(0.1)
        return True

    def last_transaction(self):
        return u64(self.storage.lastTransaction())

    # -- application level -------------------------------------------------

    def _root(self):
        self.tm.begin()
        return self.conn.root()

    def set(self, key, value):
        root = self._root()
        root[str(key)] = _native(value)
        self.tm.get().note(u"z4 set %s" % key)
        self.tm.commit()
        return u64(root._p_serial)

    def get(self, key):
        root = self._root()
        value = root.get(str(key))
        if isinstance(value, BTrees.Length.Length):
            value = value()
        elif isinstance(value, PersistentMapping):
            value = dict(value)
        self.tm.abort()
        return _jsonable(value)

    def wait_for(self, key, value, timeout=20):
        deadline = time.time() + timeout
        while True:
            got = self.get(key)
            if got == value:
                return got
            if time.time() > deadline:
                raise AssertionError("root[%r] is %r, not %r after %ss"
                                     % (key, got, value, timeout))
            time.sleep(0.05)

    def make_counter(self, key):
        root = self._root()
        root[str(key)] = BTrees.Length.Length(0)
        self.tm.commit()
        return 0

    def counter_begin(self, key, delta):
        """Reads the counter and changes it, leaving the commit for later,
        so another client can commit in between."""
        root = self._root()
        counter = root[str(key)]
        counter.change(delta)
        return counter()

    def commit(self):
        self.tm.commit()
        return None

    def abort(self):
        self.tm.abort()
        return None

    def map_begin(self, key, field, value):
        """Changes a PersistentMapping in an open transaction (no conflict
        resolution: a concurrent change is a ConflictError)."""
        root = self._root()
        if str(key) not in root:
            root[str(key)] = PersistentMapping()
            self.tm.commit()
            root = self._root()
        mapping = root[str(key)]
        mapping[str(field)] = _native(value)
        return None

    # -- storage level: what the server itself answers ----------------------

    def stale_store(self, key):
        """Stores root[key] (a persistent object) with the serial it had
        before the last commit: the server must answer a ConflictError
        through serialnos."""
        root = self._root()
        obj = root[str(key)]
        oid = obj._p_oid
        history = self.storage.history(oid, 2)
        self.tm.abort()
        if len(history) < 2:
            raise AssertionError("need two revisions, have %d" % len(history))
        stale = history[1]["tid"]
        data = self.storage.loadSerial(oid, stale)
        txn = transaction.Transaction()
        self.storage.tpc_begin(txn)
        try:
            self.storage.store(oid, stale, data, "", txn)
            self.storage.tpc_vote(txn)
        except ZODB.POSException.ConflictError as e:
            self.storage.tpc_abort(txn)
            return {"error": type(e).__name__, "oid": u64(e.oid),
                    "serials": [u64(s) for s in e.serials],
                    "class_name": e.class_name}
        self.storage.tpc_abort(txn)
        raise AssertionError("no ConflictError for a stale serial")

    def load_missing(self):
        try:
            self.storage.load(p64(2 ** 62), "")
        except ZODB.POSException.POSKeyError as e:
            return {"error": type(e).__name__, "oid": u64(e.args[0])}
        raise AssertionError("no POSKeyError")

    def info(self):
        return {"name": self.storage.getName(), "len": len(self.storage),
                "undo": bool(self.storage.supportsUndo())}

    def undo_last(self, key):
        """Undoes the last transaction that changed root[key] (a
        transaction written by set())."""
        log = self.db.undoLog(0, 20)
        for entry in log:
            if entry["description"] == "z4 set %s" % key:
                self.db.undo(entry["id"], self.tm.get())
                self.tm.commit()
                return None
        raise AssertionError("no undoable transaction for %s" % key)


def _native(value):
    if isinstance(value, dict):
        return PersistentMapping(
            {str(k): _native(v) for k, v in value.items()})
    if isinstance(value, unicode):
        return value.encode("utf-8")
    return value


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def main():
    worker = Worker()
    for line in iter(sys.stdin.readline, ""):
        command = json.loads(line)
        op = command.pop("op")
        try:
            result = {"ok": getattr(worker, op)(**command)}
        except Exception as e:
            traceback.print_exc()
            result = {"error": type(e).__name__, "message": str(e)}
        print(json.dumps(result))
        sys.stdout.flush()
    worker.close()


if __name__ == "__main__":
    main()
