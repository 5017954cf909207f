"""Which of ZEO's and ZODB's own test classes run against the server.

The classes come from the installed ZEO and ZODB packages (never copied).
The few local subclasses below only change a test class's storage
configuration or add a ZODB mixin that ZEO does not mix in itself.
"""
import unittest

import ZEO.tests.testConnection as testConnection
import ZEO.tests.testZEO as testZEO
from ZEO.ClientStorage import ClientStorage
from ZEO.tests import forker
from ZODB.tests import HistoryStorage
from ZODB.tests import PersistentStorage
from ZODB.tests import StorageTestBase

FILESTORAGE = """\
<filestorage 1>
path Data.fs
</filestorage>
"""


class FileStorageClientConflictResolutionTests(
        testZEO.ClientConflictResolutionTests):
    """``ClientConflictResolutionTests`` on a FileStorage.

    ZEO's class serves a ``<mappingstorage>``, an in-memory Python storage
    that zeod does not have (it serves FileStorages only).  What the class
    tests, conflicts handed back to the client by ``vote`` with
    ``client-conflict-resolution true``, does not depend on the storage.
    """

    def getConfig(self):
        return FILESTORAGE


class FileStorageZRPCConnectionTests(testZEO.ZRPCConnectionTests):
    """``ZRPCConnectionTests`` (bad messages, error logging, reconnect
    invalidation) on a FileStorage instead of a ``<mappingstorage>``."""

    def getConfig(self, path, create, read_only):
        return FILESTORAGE


class HistoryPersistenceTests(
        StorageTestBase.StorageTestBase,
        HistoryStorage.HistoryStorage,
        PersistentStorage.PersistentStorage):
    """ZODB's ``HistoryStorage`` and ``PersistentStorage`` mixins, which ZEO
    does not mix in.  ``open()`` restarts the *server* on the same port and
    Data.fs, so ``testUpdatesPersist`` checks that what the server wrote
    survives a restart, not just a client reconnect."""

    def setUp(self):
        super().setUp()
        self._port = 0
        self._start()

    def _start(self):
        # keep=True: stopping leaves Data.fs for the restart; the test's
        # temporary directory is removed by tearDown anyway.
        addr, self._stop = forker.start_zeo_server(
            FILESTORAGE, forker.ZEOConfig(("127.0.0.1", self._port)),
            keep=True)
        self._port = addr[1]
        self._storage = ClientStorage(addr, wait=1, wait_timeout=60)
        self._storage.registerDB(testZEO.DummyDB())

    def open(self):
        self._storage.close()
        self._stop()
        self._start()

    def tearDown(self):
        self._storage.close()
        self._stop()
        super().tearDown()


# (class, why it is in the list)
CLASSES = [
    (testZEO.FileStorageTests,
     "generic storage mixins over a FileStorage"),
    (testZEO.BlobAdaptedFileStorageTests,
     "same plus streamed blob upload/download"),
    (testZEO.BlobWritableCacheTests,
     "same with a blob directory shared by server and client"),
    (testZEO.FileStorageRecoveryTests,
     "restore/copyTransactionsFrom between two servers"),
    (FileStorageClientConflictResolutionTests,
     "client-side conflict resolution (dict vote results)"),
    (FileStorageZRPCConnectionTests,
     "bad messages, server error logging, reconnect"),
    (testConnection.FileStorageConnectionTests,
     "restarts, read-only servers and clients, invalidations"),
    (testConnection.FileStorageReconnectionTests,
     "reconnection, cache verification after restart"),
    (testConnection.FileStorageInvqTests,
     "invalidation queue and its overflow"),
    (testConnection.FileStorageTimeoutTests,
     "transaction-timeout"),
    (HistoryPersistenceTests,
     "history() and data surviving a server restart"),
]


def class_label(cls):
    return "%s.%s" % (cls.__module__.rsplit(".", 1)[-1], cls.__name__)


def test_names(cls):
    """Test method names with both prefixes, as ZEO's ``test_suite()`` does:
    ZODB < 6 mixins use ``check*``, ZODB >= 6 ``test*``."""
    names = []
    for prefix in ("check", "test"):
        loader = unittest.TestLoader()
        loader.testMethodPrefix = prefix
        names += [n for n in loader.getTestCaseNames(cls) if n not in names]
    return names


def all_tests():
    """[(test id, class, method name)] of every test of every class."""
    return [("%s.%s" % (class_label(cls), name), cls, name)
            for cls, _ in CLASSES for name in test_names(cls)]
