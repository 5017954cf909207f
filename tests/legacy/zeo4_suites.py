"""ZEO 4's own storage and connection tests, through a ZEO 4 ClientStorage
(Python 2.7), against zeod.

ZEO 4's test forker spawns its test server script; zeod_zeoserver.py
takes that script's place (same command line, same admin-port contract)
and runs ``zeod serve``. Runs under the venv of venv.sh:

    python zeo4_suites.py [--all] [--run-excluded] [-k PATTERN]...

Without ``--all`` it runs the classes of ``QUICK`` (what fits CI's time);
``-k`` keeps tests whose ``Class.method`` contains a pattern. Exclusions
(with reasons) are listed below. Prints one line per test and, last,
``N passed, N failed, N skipped``.
"""
from __future__ import print_function

import errno
import os
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

import ZEO.tests.zeoserver  # noqa: E402

# The forker runs ``sys.executable ZEO.tests.zeoserver.__file__ -C ...``.
ZEO.tests.zeoserver.__file__ = os.path.join(HERE, "zeod_zeoserver.py")

from ZEO.tests import forker, testConnection, testZEO  # noqa: E402

_shutdown_zeo_server = forker.shutdown_zeo_server


def shutdown_zeo_server(adminaddr):
    # forker's shutdown connects to the test server's admin address up to
    # three times and counts only a refused connect as "gone"; a connect
    # that lands in the backlog as zeod_zeoserver.py closes its listener
    # after the second one is reset instead (seen once in CI, in a
    # tearDown). Either way the test server is stopping.
    try:
        _shutdown_zeo_server(adminaddr)
    except socket.error as e:
        if e.args[0] != errno.ECONNRESET:
            raise


forker.shutdown_zeo_server = shutdown_zeo_server

# BlobAdaptedFileStorageTests runs every FileStorageTests test (the ZODB
# storage mixins) plus the blob tests, so CI runs it instead of both.
QUICK = [
    testZEO.BlobAdaptedFileStorageTests,
    testZEO.FileStorageRecoveryTests,
    testZEO.ZRPCConnectionTests,
    testConnection.FileStorageReconnectionTests,
    testConnection.FileStorageInvqTests,
    testConnection.FileStorageTimeoutTests,
]
CLASSES = [
    testZEO.FileStorageTests,
    testZEO.MappingStorageTests,
    testZEO.BlobAdaptedFileStorageTests,
    testZEO.BlobWritableCacheTests,
    testZEO.FileStorageRecoveryTests,
    testZEO.ZRPCConnectionTests,
    testConnection.FileStorageConnectionTests,
    testConnection.FileStorageReconnectionTests,
    testConnection.FileStorageInvqTests,
    testConnection.FileStorageTimeoutTests,
]

# "Class.method" (or "Class.*") -> why it cannot pass against zeod.
EXCLUDED = {
    # Conflict resolution of application classes runs their Python
    # _p_resolveConflict; ZEO 4 servers ran it on the server. zeod runs no
    # Python: it merges BTrees and BTrees.Length natively, and ZEO 4 clients
    # have no client-side resolution (ZEO 5's vote hand-back), so these
    # PCounter conflicts stay ConflictErrors (checked with --run-excluded).
    "*.checkResolve": "PCounter conflict resolution needs Python on the server",
    "*.checkUndoConflictResolution": "PCounter conflict resolution needs Python on the server",
    "*.checkUndoMultipleConflictResolution": "PCounter conflict resolution needs Python on the server",
    "*.checkUndoMultipleConflictResolutionReversed": "PCounter conflict resolution needs Python on the server",
}


def excluded(test):
    cls = type(test).__name__
    name = test._testMethodName
    for key in ("%s.%s" % (cls, name), "%s.*" % cls, "*.%s" % name):
        if key in EXCLUDED:
            _matched.add(key)
            return EXCLUDED[key]
    return None


class Result(unittest.TextTestResult):
    pass


_matched = set()
# --run-excluded: run excluded tests too (to check they still fail).
_run_excluded = False


def suite(classes, patterns):
    all_tests = unittest.TestSuite()
    loader = unittest.TestLoader()
    for klass in classes:
        for prefix in ("check", "test"):
            loader.testMethodPrefix = prefix
            for method in loader.getTestCaseNames(klass):
                test = klass(method)
                name = "%s.%s" % (klass.__name__, method)
                if patterns and not any(p in name for p in patterns):
                    continue
                why = excluded(test)
                if why and not _run_excluded:
                    setattr(test, test._testMethodName,
                            unittest.skip("excluded: " + why)(
                                getattr(test, test._testMethodName)))
                all_tests.addTest(test)
    return all_tests


def main(argv):
    patterns = [argv[i + 1] for i, a in enumerate(argv) if a == "-k"]
    global _run_excluded
    _run_excluded = "--run-excluded" in argv
    classes = CLASSES if "--all" in argv else QUICK
    verbosity = 2
    tests = suite(classes, patterns)
    started = time.time()
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=verbosity,
                                     resultclass=Result)
    result = runner.run(tests)
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("ZEO 4 suites against zeod, %.0fs" % (time.time() - started))
    if "--all" in argv and not patterns:
        for key in sorted(set(EXCLUDED) - _matched):
            print("note: exclusion %s matched no test" % key)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
