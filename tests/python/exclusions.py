"""Every test of tests/python that does not run, and why.

Keys are test ids (``*`` is a wildcard), matched against
* for ZEO's and ZODB's suites: ``module.Class.method`` (pytest shows them as
  ``test_suite_case[DIALECT-module.Class.method]``; an exclusion applies to
  both dialects);
* for the other tests: ``file.py::test_name[params]``.
Values are ``(servers, reason)``: ``servers`` is the set of ``ZEOD_SERVER``
values the exclusion applies to.  conftest.py applies this list; nothing else
in tests/python skips tests.

PENDING lists zeod failures that are server bugs being fixed, so the stage
stays green meanwhile; ``ZEOD_PY_STRICT=1`` runs them anyway.
"""
import os
import re

ALL = frozenset({"zeod", "runzeo"})
ZEOD = frozenset({"zeod"})
RUNZEO = frozenset({"runzeo"})

UNDO_RESOLVE = ("undo resolved by PCounter._p_resolveConflict, a ZODB test "
                "class: needs Python on the server; undo has no client-side "
                "resolution")

EXCLUDED = {
    # --- zeod: impossible, or out of its design
    "testZEO.*Tests.testUndoConflictResolution": (ZEOD, UNDO_RESOLVE),
    "testZEO.*Tests.testUndoMultipleConflictResolution": (ZEOD, UNDO_RESOLVE),
    "testZEO.*Tests.testUndoMultipleConflictResolutionReversed": (
        ZEOD, UNDO_RESOLVE),
    "testZEO.quick_close_doesnt_kill_server": (
        ZEOD, "serves over TLS (<zeo><ssl>); zeod has no TLS, by design "
        "(terminate TLS in front of it)"),
    # --- both servers: the environment (CI runs as root)
    "ClientStorage*Blobs.blob_transaction_txt": (
        ALL, "expects PermissionError opening a committed (read-only) blob "
        "for writing; root may, truncating it, so a later example fails too"),
    # --- baseline only: Python's runzeo behaves differently, by design
    "test_bad_input.py::test_bad_input[*-frame_over_size_limit]": (
        RUNZEO, "runzeo has no frame size limit (zeod: --max-frame-size)"),
    "test_bad_input.py::test_bad_input[pickle-forbidden_global_builtins_exec]": (
        RUNZEO, "Python's server unpickles any builtins global and RUNS "
        "exec: a known hole zeod must not have"),
}

PENDING = {
    "testZEO.*Tests.testTransactionExtensionFromIterator": (
        ZEOD, "zeod refuses GLOBAL builtins.dict in a tpc_begin extension"),
}
if os.environ.get("ZEOD_PY_STRICT"):
    PENDING = {}


def reason(test_id, server):
    """The reason ``test_id`` is excluded against ``server``, or None."""
    for pattern, (servers, why) in PENDING.items():
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        if server in servers and re.fullmatch(regex, test_id):
            return "pending zeod fix: " + why
    for pattern, (servers, why) in EXCLUDED.items():
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        if server in servers and re.fullmatch(regex, test_id):
            return why
    return None
