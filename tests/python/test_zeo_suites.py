"""ZEO's and ZODB's own storage test-suites, run against an external server.

One pytest test per unittest test method and wire dialect, so the output
lists each test by its id (``pickle-testZEO.FileStorageTests.checkLen``).
The server under test is started by ``zeod_forker.start_external`` for every
test (every test needs a fresh storage in its own directory, spec §13.2).
"""
import faulthandler
import os
import signal
import traceback
import unittest

import pytest

import suites
import zeod_forker

# Generous: the slowest ZEO tests take ~20 s against runzeo.
TEST_TIMEOUT = int(os.environ.get("ZEOD_PY_TEST_TIMEOUT", "120"))
# ZODB's race tests run worker threads for a fixed amount of work and wait
# for them with a 120 s deadline of their own (a hang fails there, with a
# clear message). On a loaded 2-core machine, setup plus that work takes
# 50-130 s, so the case as a whole gets more room than TEST_TIMEOUT.
RACE_TEST_TIMEOUT = max(TEST_TIMEOUT, 300)
DIALECTS = os.environ.get("ZEOD_PY_DIALECTS", "pickle msgpack").split()

zeod_forker.install()


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout("test took more than its time limit")


def _params():
    params = []
    for dialect in DIALECTS:
        for test_id, factory in suites.all_tests():
            params.append(pytest.param(dialect, test_id, factory,
                                       id="%s-%s" % (dialect, test_id)))
    return params


@pytest.mark.parametrize("dialect,test_id,factory", _params())
def test_suite_case(dialect, test_id, factory):
    zeod_forker.dialect = dialect
    zeod_forker.current_test = "%s-%s" % (dialect, test_id)
    zeod_forker.current_logs = []
    case = factory()
    result = unittest.TestResult()
    old = signal.signal(signal.SIGALRM, _alarm)
    limit = RACE_TEST_TIMEOUT if ".test_race_" in test_id else TEST_TIMEOUT
    signal.alarm(limit)
    # Last resort if even tearDown hangs: dump every thread and exit.
    faulthandler.dump_traceback_later(limit + 60, exit=True)
    try:
        case.run(result)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()
        zeod_forker.stop_all()
    problems = result.errors + result.failures
    if problems:
        text = "\n".join(trace for _, trace in problems)
        for log in zeod_forker.current_logs:
            text += "\n--- server log %s (tail)\n%s" % (
                log, zeod_forker.tail(log, 3000))
        pytest.fail(text, pytrace=False)
    if result.unexpectedSuccesses:
        pytest.fail("unexpected success", pytrace=False)
    if result.skipped:
        pytest.skip("skipped by the suite itself: " + result.skipped[0][1])
    assert result.testsRun == 1, traceback.format_stack()
