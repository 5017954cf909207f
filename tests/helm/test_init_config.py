"""The chart's configuration, read by the real `zeod init`.

For every container the chart runs through `zeod init` (renderers, their
bootstrap, read-only renderers, the LB), this feeds exactly the rendered
environment and ConfigMap to `zeod init --render-only` with the repository's
templates, as the images do. The init rejects unknown or mistyped settings,
so a key the chart writes that the init does not know fails here; then the
rendered zope.conf, zope.ini and haproxy.cfg are checked against the
Services and ports of the same rendering.

Needs $ZEOD_BIN (the zeod binary; tests/helm/run builds it if missing).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from test_chart import HERE, SCENARIOS, containers, env, render

ROOT = HERE.parent.parent
ZEOD = os.environ.get("ZEOD_BIN")
TEMPLATES = ROOT / "docker" / "renderer" / "templates"
LB_INIT = ROOT / "docker" / "lb" / "init.toml"

pytestmark = pytest.mark.skipif(not ZEOD, reason="ZEOD_BIN not set")


def init_render(container, spec, configmaps, tmp, baked_config=None):
    """Runs `zeod init --render-only` as the container would; returns the
    rendered files by name."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    environment = {"PATH": os.environ["PATH"]}
    for e in container.get("env", []):
        environment[e["name"]] = e.get("value", "from-a-secret")
    for m in container.get("volumeMounts", []):
        v = volumes[m["name"]]
        if "configMap" in v:
            d = tmp / "config"
            d.mkdir()
            for key, text in configmaps[v["configMap"]["name"]]["data"].items():
                (d / key).write_text(text)
            config = environment.get("ZEOD_INIT_CONFIG", "")
            assert config.startswith(m["mountPath"] + "/"), config
            environment["ZEOD_INIT_CONFIG"] = str(d / config[len(m["mountPath"]) + 1:])
    if "ZEOD_INIT_CONFIG" not in environment and baked_config:
        environment["ZEOD_INIT_CONFIG"] = str(baked_config)
    out = tmp / "out"
    out.mkdir()
    r = subprocess.run(
        [ZEOD, "init", "--render-only", "--templates", str(TEMPLATES), "--output-dir", str(out)],
        env=environment, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, f"zeod init refused the chart's settings:\n{r.stderr}"
    return {p.name: p.read_text() for p in out.iterdir()}


def option(text, key):
    """Values of `key value` lines (ZConfig) or `key = value` (ini)."""
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{re.escape(key)}\s*=?\s+(.+)$", text, re.M)]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_zope_config_rendered_by_zeod_init(scenario, tmp_path):
    m = render(scenario=scenario)
    configmaps = {c["metadata"]["name"]: c for c in m.of("ConfigMap")}
    zeo_svc = next(s for s in m.of("Service") if s["metadata"]["name"].endswith("-zeo"))
    zeo_port = zeo_svc["spec"]["ports"][0]["port"]
    checked = 0
    for d in m.of("Deployment"):
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        if component not in ("renderer", "renderer-readonly"):
            continue
        spec = d["spec"]["template"]["spec"]
        zope = spec["containers"][0]
        for c in containers(spec):
            tmp = tmp_path / f"{component}-{c['name']}"
            tmp.mkdir()
            files = init_render(c, spec, configmaps, tmp)
            conf, ini = files["zope.conf"], files["zope.ini"]
            assert option(conf, "server") == [f"{zeo_svc['metadata']['name']}:{zeo_port}"]
            assert option(conf, "storage") == ["1"]
            assert option(conf, "read-only") == ["on" if component == "renderer-readonly" else "off"]
            shared = scenario in ("shared-blobs", "everything")
            assert option(conf, "shared-blob-dir") == ["on" if shared else "off"]
            mounts = {v["mountPath"] for v in c["volumeMounts"]}
            (blob_dir,) = option(conf, "blob-dir")
            assert blob_dir in mounts, "the blob directory must be the blobs volume"
            assert option(conf, "cache-size")[-1] == "128MB"  # the ZEO client cache
            assert option(ini, "port") == [str(zope["ports"][0]["containerPort"])]
            # readonly-renderer.yaml gives them ZOPE_THREADS=4: the environment wins.
            threads = "4" if (scenario, component) == ("readonly-renderer", "renderer-readonly") else "2"
            assert option(ini, "threads") == [threads]
            # zeod init writes to /app/etc, Zope to its instance and client
            # homes: all on volumes, the root filesystem is read-only.
            assert {"/app/etc", "/app/var/cache", "/data"} <= mounts
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("scenario", ["lb", "everything"])
def test_haproxy_config_rendered_by_zeod_init(scenario, tmp_path):
    m = render(scenario=scenario)
    (lb,) = [d for d in m.of("Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "lb"]
    spec = lb["spec"]["template"]["spec"]
    (haproxy,) = spec["containers"]
    cfg = init_render(haproxy, spec, {}, tmp_path, baked_config=LB_INIT)["haproxy.cfg"]
    headless = next(s for s in m.of("Service") if s["metadata"]["name"].endswith("-renderer-headless"))
    fqdn = f"{headless['metadata']['name']}.site.svc.cluster.local"
    assert f"server-template renderer 32 {fqdn}:8080 resolvers dns" in cfg
    assert "nameserver dns1 kube-dns.kube-system.svc.cluster.local:53" in cfg
    assert re.search(r"^\s*bind :8080$", cfg, re.M)
    assert re.search(r"^\s*cookie zeo-route insert", cfg, re.M)
    assert "monitor-uri /lb-health" in cfg
    assert "http-check send meth GET uri /ok" in cfg
