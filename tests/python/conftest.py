"""Applies tests/python/exclusions.py to every collected test."""
import pytest

import exclusions
import zeod_forker


def exclusion_id(item):
    """(test id, dialect) as exclusions.py names them."""
    if getattr(item, "originalname", None) == "test_suite_case":
        dialect, test_id = item.callspec.id.split("-", 1)
        return test_id, dialect
    return "%s::%s" % (item.path.name, item.name), None


def pytest_collection_modifyitems(config, items):
    for item in items:
        test_id, dialect = exclusion_id(item)
        why = exclusions.reason(test_id, zeod_forker.SERVER, dialect)
        if why:
            item.add_marker(pytest.mark.skip(reason="excluded: " + why))


def pytest_report_header(config):
    command = zeod_forker.server_command("<conf>")
    return "server under test: %s (ZEOD_SERVER=%s)" % (
        " ".join(command), zeod_forker.SERVER)
