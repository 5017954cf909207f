"""Rendering helm/zeo-appliance and reading the result: shared by the
chart tests (test_chart.py, test_init_config.py).

`render()` runs `helm template` (helm on PATH, the chart at $CHART) for a
scenario of values/ or the defaults; `Manifests` finds objects in it;
`selects()` applies Kubernetes label-selector semantics.
"""

import os
import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).parent
CHART = Path(os.environ.get("CHART", HERE.parent.parent / "helm" / "zeo-appliance"))
SCENARIOS = ["defaults"] + sorted(p.stem for p in (HERE / "values").glob("*.yaml"))
WORKLOADS = ("Deployment", "StatefulSet")
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


def render(*values, sets=(), scenario=None):
    args = ["helm", "template", "zeo", str(CHART), "--namespace", "site"]
    if scenario and scenario != "defaults":
        args += ["-f", str(HERE / "values" / f"{scenario}.yaml")]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return Manifests([d for d in yaml.safe_load_all(out) if d])


class Manifests(list):
    def of(self, kind):
        return [d for d in self if d["kind"] == kind]

    def one(self, kind, name):
        found = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def get(self, kind, name):
        found = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        return found[0] if found else None

    def pod_specs(self):
        """(owner, pod metadata, pod spec) of every workload and bare pod."""
        for d in self:
            if d["kind"] in WORKLOADS:
                t = d["spec"]["template"]
                yield d, t["metadata"], t["spec"]
            elif d["kind"] == "Pod":
                yield d, d["metadata"], d["spec"]

    def component(self, component):
        return [
            d for d in self.of("Deployment") + self.of("StatefulSet")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def env(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def selects(selector, labels):
    """Kubernetes label selector semantics (matchLabels + matchExpressions)."""
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        op, key, vals = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def zeo_service(m):
    storage_pods = [meta["labels"] for d, meta, _ in m.pod_specs() if d["kind"] == "StatefulSet"]
    found = [
        s for s in m.of("Service")
        if s["spec"].get("clusterIP") != "None"
        and any(p["name"] == "zeo" for p in s["spec"]["ports"])
        and selects({"matchLabels": s["spec"]["selector"]}, storage_pods[0])
    ]
    assert len(found) == 1
    return found[0]


def zeo_clients(m):
    """Every container that runs Zope against the storage."""
    for d, meta, spec in m.pod_specs():
        for c in containers(spec):
            if "ZEO_ADDRESS" in env(c):
                yield d, meta, c
