"""A ZODB application in its own process, driven over a pipe by test_app.

Each worker is one ``DB(ClientStorage)`` with a persistent client cache, as a
Zope instance has.  The test sends ``(method, args)``; the worker answers
``("ok", result)`` or ``("error", exception class name, message)``.
"""
import multiprocessing
import time
import traceback

import transaction
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage
from ZODB import DB
from ZODB.POSException import ConflictError


class RecordingClientStorage(ClientStorage):
    """Remembers how each (re)connection verified the client cache:
    "empty cache", "Cache up to date", "quick verification" (the server's
    getInvalidations answered) or "cache too old, clearing"."""

    def __init__(self, *args, **kw):
        self.verify_results = []
        super().__init__(*args, **kw)

    def notify_connected(self, conn, info):
        super().notify_connected(conn, info)
        self.verify_results.append(conn.verify_result)


class Values:
    """The data model of the test clients (here and tests/legacy's ZEO 6
    client): ``root[key]["v"]``, through ``self.tm`` and ``self.root``."""

    def write(self, keys, value):
        self.tm.begin()
        for k in keys:
            self.root[k]["v"] = value
        self.tm.commit()

    def read(self, keys):
        """Values of ``keys`` as of a new transaction (loads them all)."""
        self.tm.begin()
        values = {k: self.root[k]["v"] for k in keys if k in self.root}
        self.tm.abort()
        return values

    def wait_for(self, expected, timeout=30):
        """Polls until ``read`` returns ``expected`` (invalidations arrive
        asynchronously); returns what it read last."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.read(list(expected))
            if got == expected or time.monotonic() > deadline:
                return got
            time.sleep(0.05)


class App(Values):

    def __init__(self, addr, name, var):
        self.addr, self.name, self.var = addr, name, var
        self.db = None

    def open(self):
        self.storage = RecordingClientStorage(
            self.addr, client=self.name, var=self.var, wait_timeout=30,
            min_disconnect_poll=0.2, max_disconnect_poll=1)
        self.db = DB(self.storage)
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(self.tm)
        self.root = self.conn.root()

    def close(self):
        self.db.close()
        self.db = None

    def create(self, keys):
        self.tm.begin()
        for k in keys:
            self.root[k] = PersistentMapping(v=0)
        self.tm.commit()

    def prepare(self, key, value):
        """Starts a transaction that changes ``key`` and leaves it open."""
        self.tm.begin()
        self.root[key]["v"] = value

    def commit(self):
        try:
            self.tm.commit()
        except ConflictError as exc:
            self.tm.abort()
            return "ConflictError: %s" % exc
        return "committed"

    def oids(self, keys):
        self.tm.begin()
        return {k: self.root[k]._p_oid for k in keys}

    def cached(self, oids):
        """Which of ``oids`` the ZEO client cache holds a current record of."""
        return [oid for oid in oids if self.storage._cache.load(oid)]

    def verify_results(self):
        return list(self.storage.verify_results)

    def last_transaction(self):
        return self.storage.lastTransaction()

    def wait_connected(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.storage.is_connected():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def serve(pipe, addr, name, var):
    app = App(addr, name, var)
    while True:
        method, args = pipe.recv()
        if method == "exit":
            if app.db is not None:
                app.close()
            pipe.send(("ok", None))
            return
        try:
            pipe.send(("ok", getattr(app, method)(*args)))
        except Exception as exc:
            pipe.send(("error", type(exc).__name__,
                       "%s\n%s" % (exc, traceback.format_exc())))


class Worker:
    """The test's handle on one application process."""

    def __init__(self, addr, name, var):
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.name = name
        self.process = ctx.Process(
            target=serve, args=(child, addr, name, var), daemon=True)
        self.process.start()

    def send(self, method, *args):
        self.pipe.send((method, args))

    def result(self, timeout=60):
        if not self.pipe.poll(timeout):
            raise TimeoutError("%s did not answer in %ss" % (self.name,
                                                              timeout))
        reply = self.pipe.recv()
        if reply[0] == "error":
            raise RuntimeError("%s: %s: %s" % (self.name, reply[1], reply[2]))
        return reply[1]

    def call(self, method, *args, timeout=60):
        self.send(method, *args)
        return self.result(timeout)

    def stop(self):
        if self.process.is_alive():
            try:
                self.call("exit", timeout=30)
            except (OSError, TimeoutError, EOFError):
                pass
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)
