"""Applies tests/python/exclusions.py to every collected test."""
import pytest

import exclusions
import zeod_forker


def exclusion_id(item):
    if getattr(item, "originalname", None) == "test_suite_case":
        return item.callspec.id.split("-", 1)[1]
    return "%s::%s" % (item.path.name, item.name)


def pytest_collection_modifyitems(config, items):
    for item in items:
        why = exclusions.reason(exclusion_id(item), zeod_forker.SERVER)
        if why:
            item.add_marker(pytest.mark.skip(reason="excluded: " + why))


def pytest_report_header(config):
    command = zeod_forker.server_command("<conf>")
    return "server under test: %s (ZEOD_SERVER=%s)" % (
        " ".join(command), zeod_forker.SERVER)
