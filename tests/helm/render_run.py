"""Render-then-run: the chart's wiring, executed with the images CI built.

There is no Kubernetes cluster here, so this plays kubelet with docker:
it renders the chart, then runs the storage StatefulSet's container, the
renderer Deployment's init and main containers and the `helm test` pod
exactly as rendered (image, command, args, env, user, read-only root,
dropped capabilities, volumes) on a private docker network where each
Service name is a network alias of the pods it selects. It then runs the
rendered probes the way kubelet would, writes a note through one renderer
and reads it through the others and through the LB, then stops the storage
pod as a rollout would (SIGTERM, the rendered grace period) and checks
zeod wrote its index and every renderer reconnected. If the chart's
ZEO_ADDRESS, ports, probes, user, volumes or grace period were wrong, this
would fail.

    python3 render_run.py [--runzeo-stand-in] [--values=FILE]... STORAGE_IMAGE RENDERER_IMAGE

--runzeo-stand-in runs Python's runzeo (from the renderer image) in the
storage pod's place, with its Service aliases, user, volumes and port,
for as long as `zeod serve` cannot serve yet. Needs a running docker
daemon and both images; helm on PATH; $CHART.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

HERE = Path(__file__).parent
CHART = Path(os.environ.get("CHART", HERE.parent.parent / "helm" / "zeo-appliance"))
NAMESPACE = "site"
LB_IMAGE = os.environ.get("ZEOD_LB_IMAGE", "zeod-lb:latest")


def sh(*args, check=True, capture=True, timeout=600):
    return subprocess.run(args, check=check, capture_output=capture, text=True, timeout=timeout)


def split_image(ref):
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, "latest"
    return repo, tag


def render(storage_image, renderer_image, values=()):
    s_repo, s_tag = split_image(storage_image)
    r_repo, r_tag = split_image(renderer_image)
    l_repo, l_tag = split_image(LB_IMAGE)
    out = sh(
        "helm", "template", "zeo", str(CHART),
        "--set", f"storage.image.repository={s_repo}", "--set", f"storage.image.tag={s_tag}",
        "--set", f"renderer.image.repository={r_repo}", "--set", f"renderer.image.tag={r_tag}",
        "--set", "storage.image.pullPolicy=Never", "--set", "renderer.image.pullPolicy=Never",
        "--set", "readOnlyRenderer.enabled=true",
        "--set", f"lb.enabled=true,lb.image.repository={l_repo},lb.image.tag={l_tag},lb.image.pullPolicy=Never",
        # Docker's embedded DNS plays the cluster DNS (it knows the aliases).
        "--set", "lb.resolver=127.0.0.11:53",
        "--namespace", NAMESPACE,
        *[a for v in values for a in ("-f", v)],
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs, kind, component=None):
    return [
        d for d in docs
        if d["kind"] == kind
        and (component is None or d["metadata"]["labels"]["app.kubernetes.io/component"] == component)
    ]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def utility(tool, *args, volume):
    """Runs a coreutils tool as root on a docker volume (the storage image
    is FROM scratch, so the renderer image lends its /bin)."""
    sh("docker", "run", "--rm", "--user", "0", "--network", "none", "-v", f"{volume}:/v",
       "--entrypoint", f"/bin/{tool}", RENDERER_IMAGE, *args)


class Kubelet:
    """Just enough of a kubelet to run rendered pod specs with docker."""

    def __init__(self, docs, workdir):
        self.docs = docs
        self.workdir = Path(workdir)
        self.tag = "zeohelm-" + uuid.uuid4().hex[:8]
        self.network = self.tag
        self.containers = []
        self.volumes = []

    def __enter__(self):
        sh("docker", "network", "create", self.network)
        # Where kubelet's HTTP probes and the test's requests come from: a
        # client on the pod network that reaches pods by IP, Services by name.
        self.client = f"{self.tag}-client"
        self.containers.append(self.client)
        sh("docker", "run", "-d", "--name", self.client, "--network", self.network, "--read-only",
           "--entrypoint", "sleep", RENDERER_IMAGE, "infinity")
        return self

    def __exit__(self, *exc):
        for c in self.containers:
            sh("docker", "rm", "-f", "-v", c, check=False)
        for v in self.volumes:
            sh("docker", "volume", "rm", "-f", v, check=False)
        sh("docker", "network", "rm", self.network, check=False)

    def aliases(self, pod_labels):
        """The names cluster DNS would resolve to a pod with these labels:
        each selecting Service's, short and fully qualified."""
        names = []
        for s in find(self.docs, "Service"):
            if selects(s["spec"]["selector"], pod_labels):
                name = s["metadata"]["name"]
                names += [name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc",
                          f"{name}.{NAMESPACE}.svc.cluster.local"]
        return names

    def fetch(self, url, method="GET", data=None, timeout=30):
        """(status, headers, body) of an HTTP request from the pod network."""
        code = ("import json,sys,urllib.error,urllib.parse as p,urllib.request as u\n"
                f"d={data!r}\n"
                f"q=u.Request({url!r},method={method!r},data=p.urlencode(d).encode() if d else None)\n"
                f"try: r=u.urlopen(q,timeout={timeout})\n"
                "except urllib.error.HTTPError as e: r=e\n"
                "print(json.dumps([r.status,dict(r.headers),r.read().decode()]))")
        r = sh("docker", "exec", self.client, "python3", "-c", code, check=False)
        if r.returncode != 0:
            return None, {}, r.stderr
        return tuple(json.loads(r.stdout))

    def ip(self, container_name):
        info = json.loads(sh("docker", "inspect", container_name).stdout)[0]
        return info["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def volume_args(self, pod_name, spec, container, claims):
        args = []
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        psc = spec.get("securityContext", {})
        for m in container.get("volumeMounts", []):
            v = volumes.get(m["name"])
            path = m["mountPath"]
            ro = ",readonly" if m.get("readOnly") else ""
            if v is None or "persistentVolumeClaim" in (v or {}):
                claim = claims.get(m["name"]) or v["persistentVolumeClaim"]["claimName"]
                name = f"{self.tag}-{claim}"
                if name not in self.volumes:
                    self.volumes.append(name)
                    sh("docker", "volume", "create", name)
                    # fsGroup: kubelet gives the volume to the group, group-writable.
                    if "fsGroup" in psc:
                        utility("chgrp", "-R", str(psc["fsGroup"]), "/v", volume=name)
                        utility("chmod", "-R", "g+rwX", "/v", volume=name)
                args += ["--mount", f"type=volume,source={name},destination={path},volume-nocopy{ro}"]
            elif "emptyDir" in v:
                # One emptyDir per pod, shared by its containers (init and main).
                name = f"{self.tag}-{pod_name}-{m['name']}"
                if name not in self.volumes:
                    self.volumes.append(name)
                    sh("docker", "volume", "create", name)
                    utility("chmod", "0777", "/v", volume=name)  # as kubelet creates it
                args += ["--mount", f"type=volume,source={name},destination={path},volume-nocopy{ro}"]
            elif "configMap" in v:
                cm = next(c for c in find(self.docs, "ConfigMap")
                          if c["metadata"]["name"] == v["configMap"]["name"])
                d = self.workdir / cm["metadata"]["name"]
                d.mkdir(exist_ok=True)
                for key, text in cm["data"].items():
                    (d / key).write_text(text)
                    (d / key).chmod(0o644)
                d.chmod(0o755)
                args += ["--mount", f"type=bind,source={d},destination={path},readonly"]
            else:
                raise SystemExit(f"render_run: volume type of {m['name']} not emulated: {v}")
        return args

    def run(self, pod_name, labels, spec, container, claims=None, detach=True):
        psc = spec.get("securityContext", {})
        sc = container.get("securityContext", {})
        name = f"{self.tag}-{pod_name}-{container['name']}"
        args = ["docker", "run", "--name", name, "--network", self.network]
        for alias in self.aliases(labels):
            args += ["--network-alias", alias]
        user = sc.get("runAsUser", psc.get("runAsUser"))
        group = sc.get("runAsGroup", psc.get("runAsGroup"))
        if user is not None:
            args += ["--user", f"{user}:{group if group is not None else user}"]
        if "fsGroup" in psc:
            args += ["--group-add", str(psc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            args += ["--read-only"]
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for e in container.get("env", []):
            args += ["--env", f"{e['name']}={e['value']}"]
        args += self.volume_args(pod_name, spec, container, claims or {})
        if container.get("command"):
            args += ["--entrypoint", container["command"][0]]
        args += ["-d"] if detach else []
        args.append(container["image"])
        args += container.get("command", [])[1:] + container.get("args", [])
        self.containers.append(name)
        result = sh(*args, check=False, timeout=900)
        return name, result

    def probe(self, container_name, container, kind):
        probe = container[kind]
        if "exec" in probe:
            cmd = ["docker", "exec", container_name] + probe["exec"]["command"]
        else:
            port = probe["httpGet"]["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
            url = f"http://{self.ip(container_name)}:{port}{probe['httpGet']['path']}"
            status, _, _ = self.fetch(url, timeout=probe.get("timeoutSeconds", 1))
            return status is not None and 200 <= status < 400
        return sh(*cmd, check=False).returncode == 0

    def wait_ready(self, container_name, container, budget_seconds):
        deadline = time.monotonic() + budget_seconds
        while time.monotonic() < deadline:
            state = json.loads(sh("docker", "inspect", container_name).stdout)[0]["State"]
            if not state["Running"]:
                logs = sh("docker", "logs", "--tail", "40", container_name, check=False)
                raise SystemExit(f"{container_name} exited ({state['ExitCode']}):\n{logs.stdout}{logs.stderr}")
            if all(self.probe(container_name, container, kind)
                   for kind in ("startupProbe", "readinessProbe") if kind in container):
                return
            time.sleep(1)
        logs = sh("docker", "logs", "--tail", "40", container_name, check=False)
        raise SystemExit(f"{container_name}: not ready after {budget_seconds} s\n{logs.stdout}{logs.stderr}")


STORAGE_IMAGE = RENDERER_IMAGE = None
STAND_IN_CONF = """<zeo>
  address 0.0.0.0:{port}
</zeo>
<filestorage 1>
  path /data/Data.fs
  blob-dir /data/blobs
</filestorage>
"""


def run_storage(k, docs, stand_in):
    (sts,) = find(docs, "StatefulSet")
    pod = sts["spec"]["template"]
    (zeod,) = pod["spec"]["containers"]
    claims = {t["metadata"]["name"]: f"{t['metadata']['name']}-{sts['metadata']['name']}-0"
              for t in sts["spec"].get("volumeClaimTemplates", [])}
    if not stand_in:
        name, r = k.run("storage-0", pod["metadata"]["labels"], pod["spec"], zeod, claims)
        assert r.returncode == 0, r.stderr
        k.wait_ready(name, zeod, 120)
        print(f"render_run: storage ready: zeod {' '.join(zeod['args'])}")
        (test,) = find(docs, "Pod", "test")
        (tc,) = test["spec"]["containers"]
        _, r = k.run("test", test["metadata"]["labels"], test["spec"], tc, detach=False)
        assert r.returncode == 0, f"helm test pod failed: {r.stdout}{r.stderr}"
        print(f"render_run: helm test pod ok: {' '.join(tc['command'])}")
        return name
    # Python's runzeo in the storage pod's place: same Service aliases, same
    # user and volumes, the rendered port; only the binary differs.
    port = int(zeod["args"][zeod["args"].index("-a") + 1].rpartition(":")[2])
    stand_in_container = dict(
        zeod, image=RENDERER_IMAGE, command=["sh", "-c"],
        args=["printf '%s' \"$1\" >/tmp/zeo.conf && exec runzeo -C /tmp/zeo.conf",
              "runzeo", STAND_IN_CONF.format(port=port)],
    )
    name, r = k.run("storage-0", pod["metadata"]["labels"], pod["spec"], stand_in_container, claims)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 60
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"
    while sh("docker", "exec", name, "python3", "-c", probe, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"stand-in runzeo not listening:\n{sh('docker', 'logs', name, check=False).stderr}")
        time.sleep(1)
    print(f"render_run: storage: Python runzeo stand-in on :{port} for "
          f"{', '.join(k.aliases(pod['metadata']['labels'])[::4])} (zeod serve not used)")
    return None


def write_and_read(k, writer, readers):
    """Stores a note through one renderer; returns it once every reader
    serves it (invalidations reached them)."""
    marker = f"render-run-{uuid.uuid4().hex[:8]}"
    status, _, body = k.fetch(f"http://{k.ip(writer)}:8080/demo/add_note", "POST", {"text": marker})
    assert status == 200, (status, body[-500:])
    for cname in readers:
        deadline = time.monotonic() + 30
        while marker not in (k.fetch(f"http://{k.ip(cname)}:8080/demo")[2] or ""):
            if time.monotonic() > deadline:
                raise SystemExit(f"{cname} never showed the note written through {writer}")
            time.sleep(1)
    return marker


def restart_storage(k, docs, name, renderers):
    """What a rolling update of the StatefulSet does to the storage pod:
    SIGTERM, up to terminationGracePeriodSeconds, then a new pod on the same
    volume. zeod must exit cleanly within the grace period, having written
    Data.fs.index, and the renderers must reconnect by themselves."""
    (sts,) = find(docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    (zeod,) = spec["containers"]
    grace = spec["terminationGracePeriodSeconds"]
    started = time.monotonic()
    sh("docker", "stop", "--time", str(grace), name, timeout=grace + 60)
    took = time.monotonic() - started
    state = json.loads(sh("docker", "inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, f"zeod exited {state['ExitCode']} on SIGTERM"
    volume = f"{k.tag}-data-{sts['metadata']['name']}-0"
    listing = sh("docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/v:ro",
                 "--entrypoint", "/bin/ls", RENDERER_IMAGE, "/v").stdout.split()
    assert "Data.fs.index" in listing, f"no index written on SIGTERM: {listing}"
    print(f"render_run: storage stopped cleanly in {took:.1f} s (grace {grace} s), Data.fs.index written")
    sh("docker", "start", name)
    k.wait_ready(name, zeod, 120)
    # /ok answers 200 only while a renderer's ZEO client is connected.
    (zope,) = find(docs, "Deployment", "renderer")[0]["spec"]["template"]["spec"]["containers"]
    for cname in renderers:
        k.wait_ready(cname, zope, 120)
    write_and_read(k, renderers[-2], [renderers[0], renderers[-1]])
    print(f"render_run: after the storage restart all {len(renderers)} renderers reconnected; "
          "a new note written through one is read through the others")


def run_renderers(k, docs, component, replicas):
    (dep,) = find(docs, "Deployment", component)
    pod = dep["spec"]["template"]
    labels, spec = pod["metadata"]["labels"], pod["spec"]
    pods = [f"{component}-{i}" for i in range(replicas)]
    # Every pod's init containers start together, as on a fresh install:
    # the bootstrap race. A failed one is rerun, as kubelet does.
    for init in spec.get("initContainers", []):
        pending = list(pods)
        for attempt in range(6):
            started = {p: k.run(p, labels, spec, dict(init, name=f"{init['name']}-{attempt}"))[0] for p in pending}
            pending = []
            for p, cname in started.items():
                code = int(sh("docker", "wait", cname, timeout=900).stdout.strip())
                if code != 0:
                    logs = sh("docker", "logs", "--tail", "25", cname, check=False)
                    print(f"render_run: {p} {init['name']} exited {code} (kubelet reruns it): "
                          f"\n{logs.stdout}{logs.stderr}")
                    pending.append(p)
            if not pending:
                break
        else:
            raise SystemExit(f"{component}: init container {init['name']} never succeeded")
        print(f"render_run: {component}: {init['name']} done in {len(pods)} pods")
    (zope,) = spec["containers"]
    names = [k.run(p, labels, spec, zope)[0] for p in pods]
    startup = zope["startupProbe"]
    for cname in names:
        k.wait_ready(cname, zope, startup["periodSeconds"] * startup["failureThreshold"])
    address = next(e["value"] for e in zope["env"] if e["name"] == "ZEO_ADDRESS")
    print(f"render_run: {component}: {replicas} pods ready (probes {zope['readinessProbe']['httpGet']['path']}), "
          f"ZEO_ADDRESS={address}")
    return names


def run_lb(k, docs):
    (dep,) = find(docs, "Deployment", "lb")
    pod = dep["spec"]["template"]
    (haproxy,) = pod["spec"]["containers"]
    name, r = k.run("lb-0", pod["metadata"]["labels"], pod["spec"], haproxy)
    assert r.returncode == 0, r.stderr
    k.wait_ready(name, haproxy, 60)
    print("render_run: lb ready (probes /lb-health)")
    return name


def main(argv):
    global STORAGE_IMAGE, RENDERER_IMAGE
    args = [a for a in argv[1:] if not a.startswith("--")]
    stand_in = "--runzeo-stand-in" in argv
    values = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--values=")]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    STORAGE_IMAGE, RENDERER_IMAGE = args
    docs = render(STORAGE_IMAGE, RENDERER_IMAGE, values)
    print(f"render_run: values: {', '.join(values) or 'defaults'}")
    service = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in find(docs, "Service")
               if d["spec"].get("clusterIP") != "None"}
    with tempfile.TemporaryDirectory() as tmp, Kubelet(docs, tmp) as k:
        storage = run_storage(k, docs, stand_in)
        rw = run_renderers(k, docs, "renderer", 2)
        ro = run_renderers(k, docs, "renderer-readonly", 1)
        # A note written through one renderer is read through the others:
        # they share the storage through the chart's wiring.
        marker = write_and_read(k, rw[0], rw[1:] + ro)
        print("render_run: a note written through one renderer is served by the other "
              "and by the read-only renderer")
        # The LB finds the renderers through the headless Service's DNS and
        # pins the browser with its cookie.
        run_lb(k, docs)
        lb_url = f"http://{service['lb']['metadata']['name']}:{service['lb']['spec']['ports'][0]['port']}/demo"
        deadline = time.monotonic() + 60
        while True:
            status, headers, body = k.fetch(lb_url)
            if status == 200 and marker in body:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{lb_url}: {status} {body[-500:]}")
            time.sleep(1)
        cookie = {k.lower(): v for k, v in headers.items()}.get("set-cookie", "")
        assert cookie.startswith("zeo-route="), headers
        print(f"render_run: {lb_url} serves the site with an affinity cookie ({cookie.split(';')[0]})")
        if storage:
            restart_storage(k, docs, storage, rw + ro)
    print("render_run: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
