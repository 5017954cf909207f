"""Which of ZEO's and ZODB's own test classes run against the server.

The classes come from the installed ZEO and ZODB packages (never copied).
The one local class below adds ZODB mixins that ZEO does not mix in itself.
Classes that serve a ``<mappingstorage>`` get a new FileStorage from zeod
(see zeod_forker).
"""
import unittest

import ZEO.tests.testConnection as testConnection
import ZEO.tests.testssl as testssl
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
    (testZEO.ClientConflictResolutionTests,
     "client-side conflict resolution (dict vote results)"),
    (testZEO.ZRPCConnectionTests,
     "bad messages, server error logging, reconnect"),
    (testConnection.FileStorageConnectionTests,
     "restarts, read-only servers and clients, invalidations"),
    (testConnection.FileStorageReconnectionTests,
     "reconnection, cache verification after restart"),
    (testConnection.FileStorageInvqTests,
     "invalidation queue and its overflow"),
    (testConnection.FileStorageTimeoutTests,
     "transaction-timeout"),
    (testZEO.MultiprocessingTests,
     "ClientStorage used from forked worker processes"),
    (HistoryPersistenceTests,
     "history() and data surviving a server restart"),
    (testZEO.FileStorageSSLTests,
     "the generic storage mixins over TLS with a client certificate"),
    (testConnection.SSLConnectionTests,
     "restarts, read-only servers and reconnects over TLS"),
    (testssl.SSLConfigTest,
     "<ssl> on both ends: TLS/plain mismatches, host name check, "
     "password-function"),
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


# Doctests of ZEO's test_suite() that start their servers through
# ``start_server`` (so through the harness); the others need an in-process
# Python server or run runzeo itself (see exclusions.py for why each of
# those is left out).
ZEO_DOCTESTS = [
    "can_use_empty_string_for_local_host_on_client",
    "client_asyncore_thread_has_name",
    "client_has_newer_data_than_server",
    "client_labels",
    "close_client_storage_w_invalidations",
    "convenient_to_pass_port_to_client_and_ZEO_dot_client",
    "dont_log_poskeyerrors_on_server",
    "gracefully_handle_abort_while_storing_many_blobs",
    "history_over_zeo",
    "invalidate_client_cache_entry_on_server_commit_error",
    "open_convenience",
    "quick_close_doesnt_kill_server",
    "test_prefetch",
    "test_ruok",
    "test_server_status",
    "tpc_finish_error",
    "unix_domain_sockets",
    "iterator_sane_after_reconnect",
]
ZEO_DOCFILES = [
    "drop_cache_rather_than_verify_txt",
    "client-config_test",
    "zeo_blob_cache_test",
    "invalidation-age_txt",
    "nagios_rst",
    "new_addr_test",
    "IExternalGC_test",
]


def _walk(suite):
    if isinstance(suite, unittest.TestSuite):
        for test in suite:
            yield from _walk(test)
    else:
        yield suite


def doctest_cases():
    """[(test id, case)] of ZEO's doctests and ZODB's reusable blob suite
    (doctests and BlobUndoTests) over a ClientStorage whose server the
    suite starts itself."""
    from ZODB.tests import testblob
    cases = []
    for case in _walk(testZEO.test_suite()):
        name = case.id().rsplit(".", 1)[-1]
        if name in ZEO_DOCTESTS or name in ZEO_DOCFILES:
            cases.append(("testZEO.%s" % name, case))
    for case in _walk(testConnection.test_suite()):
        if case.id().endswith(".invalidations_while_connecting"):
            cases.append(("testConnection.invalidations_while_connecting",
                          case))
    for prefix, factory in [
            ("ClientStorageNonSharedBlobs",
             testZEO.ServerManagingClientStorage),
            ("ClientStorageSharedBlobs", testZEO.create_storage_shared)]:
        for case in _walk(testblob.storage_reusable_suite(prefix, factory)):
            name = case.id().rsplit(".", 1)[-1]
            if not isinstance(case, unittest.FunctionTestCase) and \
                    type(case).__name__.endswith("BlobUndoTests"):
                name = "BlobUndoTests." + name
            cases.append(("%s.%s" % (prefix, name), case))
    return cases


def zeo_units():
    """Every test class and doctest of ZEO's own ``test_suite()`` functions
    (testZEO, testConnection) as ``module.Name``, for the check that each
    one is either run here or listed in exclusions.NOT_RUN."""
    units = set()
    for module, label in ((testZEO, "testZEO"),
                          (testConnection, "testConnection")):
        for case in _walk(module.test_suite()):
            test = getattr(case, "_dt_test", None)
            if test is not None:
                if "/ZODB/tests/" in (test.filename or ""):
                    continue  # the reusable blob suite: run below
                units.add("%s.%s" % (label, case.id().rsplit(".", 1)[-1]))
            elif not type(case).__name__.endswith("BlobUndoTests"):
                units.add(class_label(type(case)))
    return units


def run_units():
    """What of ``zeo_units()`` this harness runs."""
    return ({class_label(cls) for cls, _ in CLASSES}
            | {test_id for test_id, _ in doctest_cases()})


def all_tests():
    """[(test id, factory of the unittest case)] of every test."""
    tests = [("%s.%s" % (class_label(cls), name),
              lambda cls=cls, name=name: cls(name))
             for cls, _ in CLASSES for name in test_names(cls)]
    tests += [(test_id, lambda case=case: case)
              for test_id, case in doctest_cases()]
    return tests
