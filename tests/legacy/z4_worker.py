# -*- coding: utf-8 -*-
"""A ZEO 4 client (Python 2.7) driven line by line from a test.

Reads one JSON ``[method, [args...]]`` per line on stdin and answers one
JSON line on stdout: ``{"ok": result}`` or ``{"error": "ClassName",
"message": "..."}``.
Runs under the venv of tests/legacy/venv.sh (ZEO 4.3.1, ZODB 4.4.5); the
test (tests/legacy/test_legacy.py, Python 3) drives a ZEO 6 client beside
it on the same storage.

"""
from __future__ import print_function

import json
import logging
import sys
import time
import traceback

import BTrees.Length
import BTrees.OOBTree
import transaction
import ZEO.ClientStorage
import ZODB
import ZODB.POSException
from persistent.mapping import PersistentMapping
from ZODB.utils import p64, u64

logging.basicConfig(
    level=logging.WARNING, stream=sys.stderr,
    format="z4_worker %(levelname)s %(name)s: %(message)s")


class RecordingClientStorage(ZEO.ClientStorage.ClientStorage):
    """Remembers how each (re)connection verified the client cache:
    "empty cache", "no verification", "quick verification" (the server's
    getInvalidations answered) or "full verification" (verify calls)."""

    def __init__(self, *args, **kw):
        self.verify_results = []
        ZEO.ClientStorage.ClientStorage.__init__(self, *args, **kw)

    def verify_cache(self, server):
        result = ZEO.ClientStorage.ClientStorage.verify_cache(self, server)
        self.verify_results.append(result)
        return result


class Worker(object):
    """One ``DB(ClientStorage)``, like a Zope 2 instance; the data model of
    tests/python/app_worker.py: ``root[key] = PersistentMapping(v=...)``,
    plus ``BTrees.Length`` counters."""

    def __init__(self):
        self.storage = None
        self.db = None

    # -- connection ------------------------------------------------------

    def open(self, addr, name=None, var=None):
        kw = dict(wait_timeout=30, min_disconnect_poll=0.2,
                  max_disconnect_poll=1)
        if name:
            kw.update(client=str(name), var=str(var))
        self.storage = RecordingClientStorage(
            (str(addr[0]), int(addr[1])), **kw)
        self.db = ZODB.DB(self.storage)
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(self.tm)
        self.root = self.conn.root()
        return self.storage._connection.peer_protocol_version.decode("ascii")

    def close(self):
        if self.db is not None:
            self.tm.abort()
            self.db.close()
        self.db = None

    def wait_connected(self, timeout):
        deadline = time.time() + timeout
        while not self.storage.is_connected():
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def verify_results(self):
        return list(self.storage.verify_results)

    def last_transaction(self):
        return u64(self.storage.lastTransaction())

    def info(self):
        return {"len": len(self.storage),
                "undo": bool(self.storage.supportsUndo())}

    # -- application level -------------------------------------------------

    def create(self, keys):
        self.tm.begin()
        for k in keys:
            self.root[str(k)] = PersistentMapping(v=0)
        self.tm.commit()

    def write(self, keys, value):
        self.tm.begin()
        for k in keys:
            self.root[str(k)]["v"] = _native(value)
        self.tm.get().note(u"z4 write")
        self.tm.commit()

    def read(self, keys):
        self.tm.begin()
        values = {}
        for k in keys:
            if str(k) in self.root:
                values[k] = _jsonable(self.root[str(k)]["v"])
        self.tm.abort()
        return values

    def wait_for(self, expected, timeout):
        deadline = time.time() + timeout
        while True:
            got = self.read(list(expected))
            if got == expected or time.time() > deadline:
                return got
            time.sleep(0.05)

    def prepare(self, key, value):
        """Starts a transaction that changes ``key`` and leaves it open."""
        self.tm.begin()
        self.root[str(key)]["v"] = _native(value)

    def commit(self):
        try:
            self.tm.commit()
        except ZODB.POSException.ConflictError as exc:
            self.tm.abort()
            return "ConflictError: %s" % exc
        return "committed"

    def oids(self, keys):
        self.tm.begin()
        oids = dict((k, u64(self.root[str(k)]._p_oid)) for k in keys)
        self.tm.abort()
        return oids

    def cached(self, oids):
        """Which of ``oids`` the ZEO client cache holds a current record of."""
        return [oid for oid in oids if self.storage._cache.load(p64(oid))]

    # -- counters: conflicts the server resolves ----------------------------

    def counter_create(self, key):
        self.tm.begin()
        self.root[str(key)] = BTrees.Length.Length(0)
        self.tm.commit()

    def counter_prepare(self, key, delta):
        """Changes counter ``key`` in a transaction left open."""
        self.tm.begin()
        self.root[str(key)].change(delta)

    def counter_value(self, key):
        self.tm.begin()
        value = self.root[str(key)]()
        self.tm.abort()
        return value

    # -- BTrees: bucket conflicts the server resolves -----------------------

    def tree_create(self, key):
        self.tm.begin()
        self.root[str(key)] = BTrees.OOBTree.OOBTree()
        self.tm.commit()

    def tree_prepare(self, key, k, v):
        """Inserts into tree ``key`` in a transaction left open."""
        self.tm.begin()
        self.root[str(key)][str(k)] = _native(v)

    def tree_items(self, key):
        self.tm.begin()
        items = dict((k, _jsonable(v)) for k, v in self.root[str(key)].items())
        types = sorted(set(type(k).__name__ for k in self.root[str(key)]))
        self.tm.abort()
        return {"items": items, "key_types": types}

    # -- storage level: what the server itself answers ----------------------

    def stale_store(self, key):
        """Stores root[key]'s object with the serial of its previous
        revision: the server must fail the vote with a ConflictError,
        delivered through serialnos."""
        self.tm.begin()
        oid = self.root[str(key)]._p_oid
        self.tm.abort()
        history = self.storage.history(oid, 2)
        if len(history) < 2:
            raise AssertionError("need two revisions, have %d" % len(history))
        current, stale = history[0]["tid"], history[1]["tid"]
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
                    "expected_serials": [u64(current), u64(stale)],
                    "class_name": e.class_name}
        self.storage.tpc_abort(txn)
        raise AssertionError("no ConflictError for a stale serial")

    def load_missing(self):
        try:
            self.storage.load(p64(2 ** 62), "")
        except ZODB.POSException.POSKeyError as e:
            return {"error": type(e).__name__, "oid": u64(e.args[0])}
        raise AssertionError("no POSKeyError")

    def undo_last_write(self):
        """Undoes the newest transaction made by write()."""
        for entry in self.db.undoLog(0, 20):
            if entry["description"] == "z4 write":
                self.tm.begin()
                self.db.undo(entry["id"], self.tm.get())
                self.tm.commit()
                return
        raise AssertionError("no undoable write")


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
        method, args = json.loads(line)
        try:
            result = {"ok": getattr(worker, method)(*args)}
        except Exception as e:
            traceback.print_exc()
            result = {"error": type(e).__name__, "message": str(e)}
        print(json.dumps(result))
        sys.stdout.flush()
    worker.close()


if __name__ == "__main__":
    main()
