"""Render-then-run: the chart's wiring, executed with the images CI built.

There is no Kubernetes cluster here, so this plays kubelet with docker:
it renders the chart, then runs the storage StatefulSet's container, the
renderer Deployment's init and main containers and the `helm test` pod
exactly as rendered (image, command, args, env, user, read-only root,
dropped capabilities, volumes) on a private docker network where each
Service name is a network alias of the pods it selects. It then runs the
rendered probes the way kubelet would. If the chart's ZEO_ADDRESS, ports,
probes, user or volumes were wrong, Zope would not get ready.

    python3 render_run.py STORAGE_IMAGE RENDERER_IMAGE

Needs a running docker daemon and both images; helm on PATH; $CHART.
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


def sh(*args, check=True, capture=True, timeout=600):
    return subprocess.run(args, check=check, capture_output=capture, text=True, timeout=timeout)


def split_image(ref):
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, "latest"
    return repo, tag


def render(storage_image, renderer_image):
    s_repo, s_tag = split_image(storage_image)
    r_repo, r_tag = split_image(renderer_image)
    out = sh(
        "helm", "template", "zeo", str(CHART), "--namespace", "site",
        "--set", f"storage.image.repository={s_repo}", "--set", f"storage.image.tag={s_tag}",
        "--set", f"renderer.image.repository={r_repo}", "--set", f"renderer.image.tag={r_tag}",
        "--set", "storage.image.pullPolicy=Never", "--set", "renderer.image.pullPolicy=Never",
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
        return self

    def __exit__(self, *exc):
        for c in self.containers:
            sh("docker", "rm", "-f", "-v", c, check=False)
        for v in self.volumes:
            sh("docker", "volume", "rm", "-f", v, check=False)
        sh("docker", "network", "rm", self.network, check=False)

    def aliases(self, pod_labels):
        """The Service names that would resolve to a pod with these labels."""
        return [
            s["metadata"]["name"] for s in find(self.docs, "Service")
            if selects(s["spec"]["selector"], pod_labels)
        ]

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
                args += ["--mount", f"type=volume,source={name},destination={path}{ro}"]
            elif "emptyDir" in v:
                # One emptyDir per pod, shared by its containers (init and main).
                name = f"{self.tag}-{pod_name}-{m['name']}"
                if name not in self.volumes:
                    self.volumes.append(name)
                    sh("docker", "volume", "create", name)
                    utility("chmod", "0777", "/v", volume=name)  # as kubelet creates it
                args += ["--mount", f"type=volume,source={name},destination={path}{ro}"]
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
            url = f"http://127.0.0.1:{port}{probe['httpGet']['path']}"
            code = ("import sys,urllib.request as u\n"
                    f"r=u.urlopen({url!r},timeout={probe.get('timeoutSeconds', 1)})\n"
                    "sys.exit(0 if 200<=r.status<400 else 1)")
            cmd = ["docker", "exec", container_name, "python3", "-c", code]
        return sh(*cmd, check=False).returncode == 0

    def wait_ready(self, container_name, container, budget_seconds):
        deadline = time.monotonic() + budget_seconds
        while time.monotonic() < deadline:
            state = json.loads(sh("docker", "inspect", container_name).stdout)[0]["State"]
            if not state["Running"]:
                logs = sh("docker", "logs", "--tail", "40", container_name, check=False)
                raise SystemExit(f"{container_name} exited ({state['ExitCode']}):\n{logs.stdout}{logs.stderr}")
            if self.probe(container_name, container, "startupProbe") and \
                    self.probe(container_name, container, "readinessProbe"):
                return
            time.sleep(1)
        logs = sh("docker", "logs", "--tail", "40", container_name, check=False)
        raise SystemExit(f"{container_name}: not ready after {budget_seconds} s\n{logs.stdout}{logs.stderr}")


STORAGE_IMAGE = RENDERER_IMAGE = None


def main(argv):
    global STORAGE_IMAGE, RENDERER_IMAGE
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    STORAGE_IMAGE, RENDERER_IMAGE = argv[1], argv[2]
    docs = render(STORAGE_IMAGE, RENDERER_IMAGE)
    with tempfile.TemporaryDirectory() as tmp, Kubelet(docs, tmp) as k:
        (sts,) = find(docs, "StatefulSet")
        pod = sts["spec"]["template"]
        (zeod,) = pod["spec"]["containers"]
        claims = {t["metadata"]["name"]: f"{t['metadata']['name']}-{sts['metadata']['name']}-0"
                  for t in sts["spec"].get("volumeClaimTemplates", [])}
        name, r = k.run("storage-0", pod["metadata"]["labels"], pod["spec"], zeod, claims)
        assert r.returncode == 0, r.stderr
        k.wait_ready(name, zeod, 120)
        print(f"render_run: storage ready: {' '.join(zeod['args'])}")

        (test,) = find(docs, "Pod", "test")
        (tc,) = test["spec"]["containers"]
        _, r = k.run("test", test["metadata"]["labels"], test["spec"], tc, detach=False)
        assert r.returncode == 0, f"helm test pod failed: {r.stdout}{r.stderr}"
        print(f"render_run: helm test pod ok: {' '.join(tc['command'])}")

        (dep,) = find(docs, "Deployment", "renderer")
        pod = dep["spec"]["template"]
        for i in range(2):  # two renderers starting together: the bootstrap race
            pod_name = f"renderer-{i}"
            for init in pod["spec"].get("initContainers", []):
                for attempt in range(5):  # kubelet restarts a failed init container
                    cname, r = k.run(pod_name, pod["metadata"]["labels"], pod["spec"], init, detach=False)
                    if r.returncode == 0:
                        break
                    print(f"render_run: {pod_name} {init['name']} attempt {attempt} failed:\n{r.stderr[-2000:]}")
                    sh("docker", "rm", "-f", cname, check=False)
                    k.containers.remove(cname)
                else:
                    raise SystemExit(f"{pod_name}: init container {init['name']} never succeeded")
            (zope,) = pod["spec"]["containers"]
            cname, r = k.run(pod_name, pod["metadata"]["labels"], pod["spec"], zope)
            assert r.returncode == 0, r.stderr
            startup = zope["startupProbe"]
            k.wait_ready(cname, zope, startup["periodSeconds"] * startup["failureThreshold"])
            print(f"render_run: {pod_name} ready through ZEO_ADDRESS="
                  f"{next(e['value'] for e in zope['env'] if e['name'] == 'ZEO_ADDRESS')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
