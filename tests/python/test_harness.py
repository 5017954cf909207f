"""Checks of the harness itself."""
import exclusions
import suites


def test_every_zeo_test_is_run_or_listed_as_not_run():
    units = suites.zeo_units()
    run = suites.run_units()
    unaccounted = units - run - set(exclusions.NOT_RUN)
    assert not unaccounted, sorted(unaccounted)
    # and no stale entries
    assert not set(exclusions.NOT_RUN) - units, sorted(
        set(exclusions.NOT_RUN) - units)
    assert not set(exclusions.NOT_RUN) & run


def test_exclusions_match_collected_tests():
    """Every exclusion pattern names at least one test (no stale entries)."""
    ids = [test_id for test_id, _ in suites.all_tests()]
    ids += ["%s-%s" % (d, i) for d in ("pickle", "msgpack") for i in ids]
    import test_bad_input
    ids += ["test_bad_input.py::test_bad_input[%s-%s]" % (d, name)
            for name, dialects, _, _ in test_bad_input.CASES
            for d in dialects]
    for table in (exclusions.EXCLUDED, exclusions.PENDING):
        for pattern in table:
            assert any(exclusions.matches(pattern, i) for i in ids), pattern
