"""End-to-end test of the compose `legacy` profile: Zope 2.13 renderers
(Python 2.7, ZEO 4 clients) served by the same zeod storage node as the
modern stack, on a storage of their own ("legacy").

Brings up only legacy-lb and what it depends on (zeo, legacy-bootstrap,
legacy-renderer), talks HTTP to the legacy balancer like a browser, and
leaves the stack to tests/e2e/run's cleanup. Run by tests/e2e/run after
test_appliance.py, once the legacy image is built. Environment as for
test_appliance.py (ZEOD_E2E_PROJECT, ZEOD_E2E_COMPOSE_FILES, ZEOD_E2E_ONLY).
"""

import base64
import os
import re
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_appliance import (  # noqa: E402  (the shared stack helpers)
    ADMIN_PASSWORD,
    OPENER,
    Stack,
    free_port,
    request,
    wait_for,
)

# Set to the reason while zeod cannot serve this test's clients; the test
# then must fail (a pass is reported as an error, so the mark is removed).
EXPECTED_FAILURE = None


class LegacyStack(Stack):
    """The compose project with the legacy profile's balancer on a free port."""

    def __init__(self):
        super().__init__()
        self.legacy_port = free_port()
        self.env.update(
            COMPOSE_PROFILES="legacy",
            ZEOD_LEGACY_HTTP_ADDR="127.0.0.1",
            ZEOD_LEGACY_HTTP_PORT=str(self.legacy_port),
        )
        self.legacy_url = f"http://127.0.0.1:{self.legacy_port}"

    def up_legacy(self):
        # A ZEO client that the server turns away retries forever, so the
        # one-shot bootstrap would never finish: bound the wait.
        self.compose("up", "-d", "--wait", "--wait-timeout", "120", "legacy-lb", timeout=300)

    def logs(self):
        return self.compose(
            "logs", "--no-color", "--tail", "60", "zeo", "legacy-bootstrap", "legacy-renderer",
            check=False,
        ).stdout


def field(page, name):
    """The text of <dd id="name"> on the legacy root page."""
    match = re.search(rf'<dd id="{name}">([^<]*)</dd>', page)
    if match is None:
        raise AssertionError(f"no {name!r} on the page: {page[:500]}")
    return match.group(1)


def admin_request(url, data=None):
    auth = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"Authorization": f"Basic {auth}"})
    try:
        with OPENER.open(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_legacy_renderer_serves_its_zope2_root_through_zeod(stack):
    """A Zope 2.13 renderer (ZEO 4 client) serves its root through zeod.

    Through the compose stack's balancer, on the legacy storage, and it
    commits there."""
    stack.up_legacy()
    page = None

    def root_page():
        nonlocal page
        response = request(stack.legacy_url + "/", timeout=30)
        page = response.body
        return response.status == 200 and "zeod legacy renderer" in page

    wait_for(root_page, "the legacy balancer to serve the Zope 2 root")
    assert field(page, "zope").startswith("2.13."), field(page, "zope")
    assert field(page, "python").startswith("2.7."), field(page, "python")
    assert field(page, "zeo").startswith("4."), field(page, "zeo")
    assert field(page, "storage") == "legacy", field(page, "storage")
    assert field(page, "connected") == "yes", page
    print(f"    served by Zope {field(page, 'zope')}, ZEO {field(page, 'zeo')}, "
          f"protocol {field(page, 'protocol')}, from {field(page, 'server')}")

    # A commit through ZEO 4's protocol: the bootstrap's Manager adds a
    # folder, and a fresh request (any renderer) reads it back.
    folder = add_folder(stack, "added through zeod")
    assert folder is not None, "manage_addFolder failed"
    status, body = admin_request(stack.legacy_url + f"/{folder}/title_or_id")
    assert status == 200 and body == "added through zeod", f"{status} {body[:300]}"


def add_folder(stack, title):
    """Adds a folder as the Manager; returns its id, or None if Zope refused."""
    folder = f"e2e-{time.monotonic_ns()}"
    status, _ = admin_request(
        stack.legacy_url + "/manage_addProduct/OFSP/manage_addFolder",
        {"id": folder, "title": title},
    )
    return folder if status in (200, 302) else None


def test_legacy_renderer_reconnects_after_a_zeo_restart(stack):
    """The ZEO 4 clients reconnect by themselves after zeo restarts.

    Earlier commits are still there, and new ones succeed."""
    stack.up_legacy()
    before = add_folder(stack, "before the restart")
    assert before is not None, "could not add a folder before the restart"
    stack.compose("restart", "zeo")
    after = None

    def commits_again():
        nonlocal after
        after = add_folder(stack, "after the restart")
        return after is not None

    wait_for(commits_again, "a legacy renderer to commit again after the zeo restart")
    for folder, title in ((before, "before the restart"), (after, "after the restart")):
        status, body = admin_request(stack.legacy_url + f"/{folder}/title_or_id")
        assert status == 200 and body == title, f"/{folder}: {status} {body[:300]}"


TESTS = [obj for name, obj in list(globals().items()) if name.startswith("test_")]


def main():
    only = os.environ.get("ZEOD_E2E_ONLY", "")
    stack = LegacyStack()
    failed, expected = [], []
    for test in TESTS:
        if only and only not in test.__name__:
            continue
        start = time.monotonic()
        print(f"--- {test.__name__}: {test.__doc__.splitlines()[0]}", flush=True)
        try:
            test(stack)
        except Exception:
            elapsed = time.monotonic() - start
            if EXPECTED_FAILURE:
                expected.append(test.__name__)
                print(f"xfail {test.__name__} ({elapsed:.0f} s): {EXPECTED_FAILURE}")
                traceback.print_exc(limit=1)
                continue
            failed.append(test.__name__)
            print(f"FAIL {test.__name__} ({elapsed:.0f} s)")
            traceback.print_exc()
            print(stack.logs())
        else:
            elapsed = time.monotonic() - start
            if EXPECTED_FAILURE:
                failed.append(test.__name__)
                print(f"XPASS {test.__name__} ({elapsed:.0f} s): passes although marked "
                      f"expected to fail ({EXPECTED_FAILURE}); remove the mark")
            else:
                print(f"ok   {test.__name__} ({elapsed:.0f} s)", flush=True)
    if failed:
        print(f"e2e legacy: {len(failed)} failed: {' '.join(failed)}")
        return 1
    print(f"e2e legacy: all passed{f' ({len(expected)} expected failures)' if expected else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
