"""End-to-end tests of the appliance: the compose stack on a real Docker.

Each test states what an operator relies on, drives the stack with
`docker compose` and talks HTTP to it like a browser would: through the
balancer, or straight to one renderer's container address. Python stdlib
only. Run by tests/e2e/run, which builds the images first; the stack's
project name, ports and extra compose files come from the environment:

  ZEOD_E2E_PROJECT        compose project name (zeod-e2e)
  ZEOD_E2E_COMPOSE_FILES  colon-separated compose files (compose/compose.yaml)
  ZEOD_E2E_ONLY           run only the tests whose names contain this
"""

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT = os.environ.get("ZEOD_E2E_PROJECT", "zeod-e2e")
COMPOSE_FILES = os.environ.get("ZEOD_E2E_COMPOSE_FILES", "compose/compose.yaml").split(":")
# 8.6 MB before TLS; rustls with ring and the progress bars brought it to
# 11.2 MB. The budget catches a dependency that drags in much more.
ZEOD_IMAGE_LIMIT = 12 * 1000 * 1000
ADMIN_PASSWORD = "e2e-secret"
# Generous: the point is that things happen by themselves, not how fast.
SETTLE_TIMEOUT = 90


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The compose project under test."""

    def __init__(self):
        self.http_port = free_port()
        self.ro_port = free_port()
        self.env = dict(
            os.environ,
            ZEOD_HTTP_ADDR="127.0.0.1",
            ZEOD_HTTP_PORT=str(self.http_port),
            ZEOD_RO_HTTP_ADDR="127.0.0.1",
            ZEOD_RO_HTTP_PORT=str(self.ro_port),
            ZEOD_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )
        self.lb_url = f"http://127.0.0.1:{self.http_port}"
        self.ro_url = f"http://127.0.0.1:{self.ro_port}"

    def compose(self, *args, check=True, timeout=300):
        command = ["docker", "compose", "-p", PROJECT]
        for path in COMPOSE_FILES:
            command += ["-f", os.path.join(ROOT, path)]
        command += list(args)
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def up(self, renderers=1):
        """Brings the whole stack up and waits until every service is healthy."""
        self.compose("up", "-d", "--wait", "--scale", f"renderer={renderers}")
        wait_for(lambda: len(self.lb_renderers(tries=renderers * 6)) == renderers,
                 f"the balancer to reach {renderers} renderer(s)")

    def scale(self, renderers):
        self.compose("up", "-d", "--wait", "--no-deps", "--scale", f"renderer={renderers}", "renderer")

    def down(self, volumes=False):
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []))

    def containers(self, service):
        ids = self.compose("ps", "-q", service).stdout.split()
        return sorted(ids)

    def address(self, container):
        out = docker("inspect", "-f",
                     "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container)
        return out.split()[0]

    def renderer_urls(self):
        return {c[:12]: f"http://{self.address(c)}:8080" for c in self.containers("renderer")}

    def lb_renderers(self, tries=12):
        """The renderers the balancer spreads GETs over (by their hostnames).
        Each GET names another Host, so Host affinity spreads them too."""
        seen = set()
        for i in range(tries):
            req = urllib.request.Request(
                self.lb_url + "/demo/notes_json", headers={"Host": f"probe{i}.invalid"}
            )
            try:
                with OPENER.open(req, timeout=5) as r:
                    seen.add(r.headers["X-Zeod-Renderer"])
            except (OSError, urllib.error.URLError):
                pass
        return seen

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout


def docker(*args):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def request(url, data=None, timeout=10):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with OPENER.open(url, data=body, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read().decode())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read().decode())


def get(url, timeout=10):
    response = request(url, timeout=timeout)
    if response.status != 200:
        raise AssertionError(f"GET {url}: {response.status} {response.body[:300]}")
    return response


def add_note(base_url, text):
    response = request(base_url + "/demo/add_note", {"text": text})
    if response.status != 303:
        raise AssertionError(f"POST {base_url}/demo/add_note: {response.status} {response.body[:300]}")
    return response.headers["X-Zeod-Note"]


def note_texts(base_url):
    return [n["text"] for n in get(base_url + "/demo/notes_json").json()["notes"]]


def wait_for(condition, what, timeout=SETTLE_TIMEOUT):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (AssertionError, OSError, urllib.error.URLError, ValueError) as error:
            last_error = error
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last error: {last_error}")


class Load:
    """A steady stream of GETs through the balancer, counting every failure."""

    def __init__(self, url, pause=0.02):
        self.url, self.pause = url, pause
        self.ok, self.failures, self.renderers = 0, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                response = request(self.url, timeout=30)
                if response.status == 200:
                    self.ok += 1
                    self.renderers.add(response.headers["X-Zeod-Renderer"])
                else:
                    self.failures.append(f"{response.status} {response.body[:120]!r}")
            except (OSError, urllib.error.URLError) as error:
                self.failures.append(repr(error))
            time.sleep(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def check(self, minimum):
        assert not self.failures, f"{len(self.failures)} of {self.ok + len(self.failures)} requests failed: {self.failures[:5]}"
        assert self.ok >= minimum, f"only {self.ok} requests went through (expected >= {minimum})"
        print(f"    {self.ok} requests, 0 failed, renderers seen: {len(self.renderers)}")


# --- the tests, in the order they run -------------------------------------------


def test_up_from_nothing(stack):
    """From no volumes at all, `up` gives a portal that answers through the LB."""
    stack.down(volumes=True)
    stack.up(renderers=1)
    page = get(stack.lb_url + "/demo/")
    assert "Served by renderer" in page.body, page.body[:500]
    assert page.headers["X-Zeod-Renderer"] in page.body
    assert get(stack.lb_url + "/ok").body.strip() == "OK"
    # ZEOD_ADMIN_PASSWORD made a Manager: the ZMI lets admin in, nobody else.
    assert request(stack.lb_url + "/manage_main").status == 401
    credentials = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    req = urllib.request.Request(stack.lb_url + "/manage_main",
                                 headers={"Authorization": f"Basic {credentials}"})
    with OPENER.open(req, timeout=10) as r:
        assert r.status == 200 and b"demo" in r.read()
    # The storage node is the zeod image, healthy by its own `zeod health`.
    zeo = stack.containers("zeo")[0]
    image, health = docker("inspect", "-f", "{{.Config.Image}} {{.State.Health.Status}}", zeo).split()
    assert (image, health) == (zeo_image(stack), "healthy"), (image, health)


def test_containers_are_hardened_and_zeo_is_private(stack):
    """Every container is non-root, read-only, capability-free; only Zope reaches ZEO."""
    for service in ("zeo", "renderer", "renderer-ro", "lb"):
        for c in stack.containers(service):
            user, read_only, caps, options = docker(
                "inspect", "-f",
                "{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|"
                "{{.HostConfig.CapDrop}}|{{.HostConfig.SecurityOpt}}", c).split("|")
            assert user and user.split(":")[0] not in ("", "0", "root"), (service, user)
            assert read_only == "true", service
            assert "ALL" in caps, (service, caps)
            assert "no-new-privileges:true" in options, (service, options)
            assert "seccomp=unconfined" not in options, (service, options)
    # The ZEO port is published nowhere.
    zeo = stack.containers("zeo")[0]
    assert docker("port", zeo) == "", docker("port", zeo)
    probe = "import socket; socket.create_connection(('zeo', 8100), timeout=5).close()"
    # A renderer connects (the probe works)...
    renderer = stack.containers("renderer")[0]
    docker("exec", renderer, "python", "-c", probe)
    # ...the balancer cannot even resolve the name.
    lb = stack.containers("lb")[0]
    docker("exec", lb, "bash", "-c", "true")  # the probe's shell is there
    result = subprocess.run(
        ["docker", "exec", lb, "bash", "-c", "timeout 5 bash -c '</dev/tcp/zeo/8100'"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0, "the balancer reached zeo:8100"


def test_content_added_on_one_renderer_is_seen_on_another(stack):
    """A note committed through renderer A is read back through renderer B."""
    stack.up(renderers=2)
    (a, url_a), (b, url_b) = sorted(stack.renderer_urls().items())
    text = f"written on {a} at {time.time()}"
    add_note(url_a, text)
    wait_for(lambda: text in note_texts(url_b), f"renderer {b} to show the note from {a}")
    assert text in note_texts(stack.lb_url)
    page = get(url_b + "/demo/")
    assert text in page.body and b in page.body


def test_scaling_up_and_down_under_load_fails_no_request(stack):
    """--scale renderer=3 then back to 1 while GETs flow: none of them fails."""
    stack.up(renderers=1)
    with Load(stack.lb_url + "/demo/") as load:
        time.sleep(2)
        stack.scale(3)
        wait_for(lambda: len(stack.lb_renderers()) == 3, "the balancer to use 3 renderers")
        time.sleep(2)
        stack.scale(1)
        wait_for(lambda: len(stack.lb_renderers()) == 1, "the balancer to drop the stopped renderers")
        time.sleep(3)
    assert len(load.renderers) >= 3, load.renderers
    load.check(minimum=50)


def test_killing_a_renderer_under_load_fails_no_request(stack):
    """docker kill of one renderer: the balancer retries elsewhere, 0 failures."""
    stack.up(renderers=2)
    victim = stack.containers("renderer")[0]
    with Load(stack.lb_url + "/demo/") as load:
        wait_for(lambda: victim[:12] in load.renderers, "the load to reach the victim")
        docker("kill", victim)
        served_before = load.ok
        wait_for(lambda: load.ok >= served_before + 50, "50 more requests after the kill")
    load.check(minimum=50)


def test_zeo_restart_renderers_reconnect_and_nothing_is_lost(stack):
    """Restarting the storage node: renderers reconnect by themselves, every
    committed note is still there and new writes go through again."""
    stack.up(renderers=2)
    before = f"before the zeo restart {time.time()}"
    add_note(stack.lb_url, before)
    committed = note_texts(stack.lb_url)
    stack.compose("stop", "zeo")
    # zeod saves its index and exits 0 on SIGTERM, within the grace period.
    zeo = stack.compose("ps", "-a", "-q", "zeo").stdout.split()[0]
    assert docker("inspect", "-f", "{{.State.ExitCode}}", zeo) == "0"
    stack.compose("start", "zeo")
    after = f"after the zeo restart {time.time()}"
    wait_for(lambda: add_note(stack.lb_url, after), "a write through the balancer to succeed again")
    for name, url in stack.renderer_urls().items():
        wait_for(lambda url=url: get(url + "/ok"), f"renderer {name} to be connected again")
        texts = note_texts(url)
        missing = [t for t in committed + [after] if t not in texts]
        assert not missing, f"renderer {name} lacks {missing}"


def test_read_only_renderer_serves_reads_and_refuses_writes(stack):
    """renderer-ro shows the notes, and a POST gets a clear 403, not a 500."""
    stack.up(renderers=1)
    text = f"seen read-only {time.time()}"
    add_note(stack.lb_url, text)
    wait_for(lambda: text in note_texts(stack.ro_url), "renderer-ro to show the new note")
    info = get(stack.ro_url + "/demo/notes_json").json()
    assert info["storage"]["read_only"] is True, info["storage"]
    refused = request(stack.ro_url + "/demo/add_note", {"text": "must not be stored"})
    assert refused.status == 403, (refused.status, refused.body[:300])
    assert "read-only ZEO client" in refused.body, refused.body
    assert "must not be stored" not in note_texts(stack.lb_url)


def test_cookie_affinity_keeps_a_browser_on_one_renderer(stack):
    """ZEOD_LB_AFFINITY=cookie: a client that returns the cookie stays put."""
    stack.up(renderers=2)
    try:
        stack.env["ZEOD_LB_AFFINITY"] = "cookie"
        stack.up(renderers=2)
        first = get(stack.lb_url + "/demo/notes_json")
        cookie = first.headers["Set-Cookie"].split(";")[0]
        assert cookie.startswith("ZEODLB="), first.headers["Set-Cookie"]
        served = set()
        for _ in range(12):
            req = urllib.request.Request(stack.lb_url + "/demo/notes_json", headers={"Cookie": cookie})
            with OPENER.open(req, timeout=10) as r:
                served.add(r.headers["X-Zeod-Renderer"])
        assert served == {first.headers["X-Zeod-Renderer"]}, served
        # Without the cookie, the balancer still spreads the load.
        assert len(stack.lb_renderers()) == 2
    finally:
        del stack.env["ZEOD_LB_AFFINITY"]
        stack.up(renderers=2)


def test_header_affinity_maps_a_host_to_one_renderer(stack):
    """ZEOD_LB_AFFINITY=header: each Host header sticks to one renderer."""
    stack.up(renderers=2)
    try:
        stack.env["ZEOD_LB_AFFINITY"] = "header"
        stack.up(renderers=2)
        by_host = {}
        for host in [f"site{i}.example" for i in range(16)]:
            served = set()
            for _ in range(3):
                req = urllib.request.Request(stack.lb_url + "/demo/notes_json", headers={"Host": host})
                with OPENER.open(req, timeout=10) as r:
                    served.add(r.headers["X-Zeod-Renderer"])
            assert len(served) == 1, (host, served)
            by_host[host] = served.pop()
        assert len(set(by_host.values())) == 2, f"16 hosts all hashed to one renderer: {by_host}"
    finally:
        del stack.env["ZEOD_LB_AFFINITY"]
        stack.up(renderers=2)


def test_data_survives_down_and_up(stack):
    """`down` (keeping volumes) then `up`: every note is still there."""
    stack.up(renderers=1)
    text = f"kept across down/up {time.time()}"
    add_note(stack.lb_url, text)
    before = note_texts(stack.lb_url)
    stack.down()
    stack.up(renderers=1)
    after = note_texts(stack.lb_url)
    assert after == before, f"lost: {[t for t in before if t not in after]}"


def test_three_renderers_from_an_empty_volume_all_become_healthy(stack):
    """The bootstrap one-shot creates the root first: no ConflictError race."""
    stack.down(volumes=True)
    stack.up(renderers=3)
    urls = stack.renderer_urls()
    assert len(urls) == 3, urls
    for name, url in urls.items():
        page = get(url + "/demo/")
        assert name in page.body
    states = [docker("inspect", "-f", "{{.State.Health.Status}} {{.RestartCount}}", c)
              for c in stack.containers("renderer")]
    assert all(s == "healthy 0" for s in states), states


def test_zeod_image_is_small(stack):
    """The storage node's image stays within 12 MB."""
    image = zeo_image(stack)
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image))
    print(f"    {image}: {size / 1e6:.2f} MB")
    assert size <= ZEOD_IMAGE_LIMIT, f"{image} is {size} bytes"


def test_zeod_image_holds_nothing_but_the_binary(stack):
    """The storage image's files: /zeod and empty volume directories, nothing else."""
    image = zeo_image(stack)
    probe = docker("create", image)
    try:
        listing = subprocess.run(
            f"docker export {probe} | tar -t", shell=True,
            capture_output=True, text=True, check=True, timeout=120).stdout.split()
    finally:
        docker("rm", probe)
    # What Docker itself puts into every container's filesystem.
    runtime = {".dockerenv", "dev/", "dev/console", "dev/pts/", "dev/shm/", "etc/",
               "etc/hostname", "etc/hosts", "etc/mtab", "etc/resolv.conf", "proc/", "sys/"}
    entries = set(listing) - runtime
    files = sorted(e for e in entries if not e.endswith("/"))
    # Empty mount points owned by the server's user: data, blobs, backups.
    dirs = sorted(e for e in entries if e.endswith("/"))
    assert files == ["zeod"], files
    assert set(dirs) <= {"data/", "data/blobs/", "backups/"}, dirs


def zeo_image(stack):
    """The image compose/compose.yaml names for zeo (extra files may swap it)."""
    out = subprocess.run(
        ["docker", "compose", "-p", PROJECT, "-f", os.path.join(ROOT, "compose/compose.yaml"),
         "config", "--format", "json"],
        env=stack.env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return json.loads(out)["services"]["zeo"]["image"]


TESTS = [obj for name, obj in list(globals().items()) if name.startswith("test_")]


def main():
    only = os.environ.get("ZEOD_E2E_ONLY", "")
    stack = Stack()
    failed = []
    for test in TESTS:
        if only and only not in test.__name__:
            continue
        start = time.monotonic()
        print(f"--- {test.__name__}: {test.__doc__.splitlines()[0]}", flush=True)
        try:
            test(stack)
        except Exception:
            failed.append(test.__name__)
            print(f"FAIL {test.__name__} ({time.monotonic() - start:.0f} s)")
            traceback.print_exc()
            print(stack.logs())
        else:
            print(f"ok   {test.__name__} ({time.monotonic() - start:.0f} s)", flush=True)
    if failed:
        print(f"e2e: {len(failed)} failed: {' '.join(failed)}")
        return 1
    print("e2e: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
