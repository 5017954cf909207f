"""Every test of tests/python that does not run, and why.

Keys are test ids (``*`` is a wildcard), matched against
* for ZEO's and ZODB's suites: ``module.Class.method`` (pytest shows them as
  ``test_suite_case[DIALECT-module.Class.method]``; an exclusion applies to
  both dialects);
* for the other tests: ``file.py::test_name[params]``.
Values are ``(servers, reason)``: ``servers`` is the set of ``ZEOD_SERVER``
values the exclusion applies to.  conftest.py applies this list; nothing else
in tests/python skips tests.
"""
import re

ALL = frozenset({"zeod", "runzeo"})
ZEOD = frozenset({"zeod"})
RUNZEO = frozenset({"runzeo"})

EXCLUDED = {
    # --- baseline only: Python's runzeo behaves differently, by design
    "suites.FileStorageZRPCConnectionTests.checkExceptionLogsAtError": (
        RUNZEO, "asserts MappingStorage's errors for history(z64, None) and "
        "history(None, None); Python's FileStorage raises others (zeod: "
        "TypeError/POSKeyError, as the test wants)"),
    "test_bad_input.py::test_bad_input[*-frame_over_size_limit]": (
        RUNZEO, "runzeo has no frame size limit (zeod: --max-frame-size)"),
    "test_bad_input.py::test_bad_input[pickle-forbidden_global_builtins_exec]": (
        RUNZEO, "Python's server unpickles any builtins global and RUNS "
        "exec: a known hole zeod must not have"),
}


def reason(test_id, server):
    """The reason ``test_id`` is excluded against ``server``, or None."""
    for pattern, (servers, why) in EXCLUDED.items():
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        if server in servers and re.fullmatch(regex, test_id):
            return why
    return None
