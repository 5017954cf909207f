"""A ZODB application on two client processes against one server.

What a Zope site with two instances relies on: commits of one are seen by
the other, a write/write conflict raises ConflictError on exactly one side,
and a client with a persistent cache comes back after a server restart
without dropping its cache (the server answers ``getInvalidations`` from the
transactions in Data.fs).
"""
import pytest

import zeod_forker
from app_worker import Worker

DIALECTS = ["pickle", "msgpack"]
KEYS = ["k%02d" % i for i in range(20)]


@pytest.fixture
def setup(tmp_path, request):
    zeod_forker.current_test = request.node.name
    zeod_forker.current_logs = []
    (tmp_path / "server").mkdir()
    server = zeod_forker.Restartable(str(tmp_path / "server"))
    server.start()
    workers = {}

    def worker(name):
        workers[name] = Worker(server.addr, name, str(tmp_path))
        workers[name].call("open")
        return workers[name]

    yield server, worker
    for w in workers.values():
        w.stop()
    if server.stop:
        server.stop()


@pytest.fixture(params=DIALECTS)
def dialect(request):
    zeod_forker.dialect = request.param
    yield request.param
    zeod_forker.dialect = "pickle"


def test_commits_are_seen_by_the_other_process(dialect, setup):
    server, worker = setup
    a, b = worker("a"), worker("b")
    a.call("create", KEYS)
    assert b.call("wait_for", {k: 0 for k in KEYS}, 30) == {k: 0 for k in KEYS}
    a.call("write", KEYS[:5], 1)
    expected = {k: (1 if k in KEYS[:5] else 0) for k in KEYS}
    assert b.call("wait_for", expected, 30) == expected
    # And the other way round, on objects `a` has in its cache.
    b.call("write", KEYS[3:8], 2)
    expected.update({k: 2 for k in KEYS[3:8]})
    assert a.call("wait_for", expected, 30) == expected


def test_concurrent_writes_conflict_on_exactly_one_side(dialect, setup):
    server, worker = setup
    a, b = worker("a"), worker("b")
    a.call("create", ["x"])
    assert b.call("wait_for", {"x": 0}, 30) == {"x": 0}
    for round_ in range(3):
        # Both change x from the same committed state, then commit at once.
        a.call("prepare", "x", "a%d" % round_)
        b.call("prepare", "x", "b%d" % round_)
        a.send("commit")
        b.send("commit")
        outcomes = {"a": a.result(), "b": b.result()}
        winners = [n for n, o in outcomes.items() if o == "committed"]
        losers = [n for n, o in outcomes.items()
                  if o.startswith("ConflictError")]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        want = {"x": "%s%d" % (winners[0], round_)}
        assert a.call("wait_for", want, 30) == want
        assert b.call("wait_for", want, 30) == want


def test_persistent_cache_survives_server_restart(dialect, setup):
    server, worker = setup
    a, b = worker("a"), worker("b")
    a.call("create", KEYS)
    values = {k: 0 for k in KEYS}
    assert a.call("read", KEYS) == values
    oids = a.call("oids", KEYS)
    assert sorted(a.call("cached", list(oids.values()))) == sorted(
        oids.values())
    # `a` goes away; its cache stays on disk.
    a.call("close")
    assert b.call("wait_for", values, 30) == values

    # Committed while `a` is away: before and after the server restarts.
    b.call("write", KEYS[:5], 1)
    server.restart()
    assert b.call("wait_connected", 30)
    b.call("write", KEYS[5:8], 2)
    values.update({k: 1 for k in KEYS[:5]})
    values.update({k: 2 for k in KEYS[5:8]})
    assert b.call("read", KEYS) == values
    assert b.call("verify_results")[-1] in (
        "quick verification", "Cache up to date"), b.call("verify_results")

    a.call("open")
    assert a.call("wait_connected", 30)
    # The server answered getInvalidations for a's cache tid: a kept its
    # cache and invalidated exactly the 8 changed objects.
    assert a.call("verify_results") == ["quick verification"]
    cached = a.call("cached", list(oids.values()))
    assert sorted(cached) == sorted(oids[k] for k in KEYS[8:])
    assert a.call("read", KEYS) == values
    assert a.call("last_transaction") == b.call("last_transaction")
