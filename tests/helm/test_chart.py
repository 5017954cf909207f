"""Assertions on the wiring of helm/zeo-appliance's rendered manifests.

kubernetes-validate proves each object is well formed; these tests prove
the objects fit together: the address renderers dial is the ZEO Service's,
probes hit ports that exist, the single writer stays single, rollouts and
disruptions keep renderers up, the NetworkPolicy admits exactly the ZEO
clients. Each test renders the chart with `helm template` (helm on PATH,
the chart at $CHART) for the scenarios in values/ plus the defaults.
"""

import json
import shutil
import subprocess

import pytest
import yaml

from manifests import (
    APP_VERSION, CHART, HERE, SCENARIOS, STANDARD_LABELS, WORKLOADS,
    containers, env, render, selects, zeo_clients, zeo_service,
)


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request):
    return request.param, render(scenario=request.param)


# --- the storage node -------------------------------------------------------


def test_storage_is_one_statefulset_of_exactly_one(scenario):
    _, m = scenario
    sts = m.of("StatefulSet")
    assert len(sts) == 1
    assert sts[0]["spec"]["replicas"] == 1
    assert sts[0]["spec"]["serviceName"] in {s["metadata"]["name"] for s in m.of("Service")}
    headless = m.one("Service", sts[0]["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


def test_renderers_dial_the_zeo_service(scenario):
    _, m = scenario
    svc = zeo_service(m)
    port = next(p for p in svc["spec"]["ports"] if p["name"] == "zeo")
    want = f"{svc['metadata']['name']}:{port['port']}"
    clients = list(zeo_clients(m))
    assert clients, "no ZEO client container rendered"
    for _, _, c in clients:
        assert env(c)["ZEO_ADDRESS"] == want, c["name"]
        assert env(c)["ZEO_STORAGE"] == "1"
    # ... and the port the Service forwards to is the one zeod listens on.
    (sts,) = m.of("StatefulSet")
    (zeod,) = sts["spec"]["template"]["spec"]["containers"]
    listen = zeod["args"][zeod["args"].index("-a") + 1]
    assert listen == f"0.0.0.0:{port['port']}"
    assert {"name": "zeo", "containerPort": port["port"], "protocol": "TCP"} in zeod["ports"]
    assert port["targetPort"] == "zeo"
    # The init waits for the same address before it starts Zope.
    for cm in m.of("ConfigMap"):
        cfg = yaml.safe_load(cm["data"]["zeod-init.yaml"])
        assert cfg["wait_for"] == [want]


def test_probes_point_at_declared_ports(scenario):
    _, m = scenario
    for d, _, spec in m.pod_specs():
        for c in containers(spec):
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if not probe:
                    continue
                action = probe.get("httpGet") or probe.get("tcpSocket")
                if action:
                    port = action["port"]
                    assert port in ports or port in ports.values(), (d["metadata"]["name"], kind, port)
                else:
                    cmd = probe["exec"]["command"]
                    host, _, port = cmd[-1].rpartition(":")
                    assert host == "127.0.0.1"
                    assert int(port) in ports.values(), (d["metadata"]["name"], kind, cmd)


def test_scratch_image_is_probed_through_the_binary_not_a_shell(scenario):
    _, m = scenario
    (sts,) = m.of("StatefulSet")
    (zeod,) = sts["spec"]["template"]["spec"]["containers"]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        cmd = zeod[kind]["exec"]["command"]
        assert cmd[:2] == ["/zeod", "health"], cmd
    # Nothing anywhere runs a shell in the scratch image.
    storage_image = zeod["image"]
    for _, _, spec in m.pod_specs():
        for c in containers(spec):
            if c["image"] != storage_image:
                continue
            words = list(c.get("command", [])) + [
                w for k in ("startupProbe", "readinessProbe", "livenessProbe")
                for w in c.get(k, {}).get("exec", {}).get("command", [])
            ]
            assert not {"sh", "/bin/sh", "bash", "/bin/bash", "-c"} & set(words), c["name"]


def test_storage_pod_is_locked_down(scenario):
    _, m = scenario
    (sts,) = m.of("StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsUser"] == 65534
    assert spec["terminationGracePeriodSeconds"] >= 60
    (c,) = spec["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_data_volume_holds_data_fs_and_blobs(scenario):
    name, m = scenario
    (sts,) = m.of("StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    assert mounts["/data"] == "data"
    args = c["args"]
    assert args[args.index("-f") + 1] == "/data/Data.fs"
    assert args[args.index("-b") + 1] == "/data/blobs"
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    volumes = {v["name"]: v for v in spec["volumes"]}
    if name == "everything":
        assert claims == []
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "site-data"
    else:
        assert claims[0] == "data"
        assert "data" not in volumes


def test_backups_go_to_their_own_volume_on_a_schedule(scenario):
    name, m = scenario
    (sts,) = m.of("StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    volumes = {v["name"]: v for v in spec["volumes"]}
    e = env(c)
    # On by default: zeod's schedule of storage "1" (the -f file) into the
    # repository at the backup volume's mount.
    assert mounts["/backups"] == "backups"
    assert e["ZEOD_STORAGE_1_BACKUP_REPOSITORY"] == "/backups"
    assert e["ZEOD_STORAGE_1_BACKUP_SCHEDULE"] == "daily 02:30"
    assert int(e["ZEOD_STORAGE_1_BACKUP_KEEP"]) >= 1
    assert e["ZEOD_STORAGE_1_BACKUP_GZIP"] == "true"
    if name == "everything":
        assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == "site-backups"
        assert e["RUST_LOG"] == "zeod=debug", "extraEnv kept next to the schedule"
    else:
        assert "backups" in claims
        assert "backups" not in volumes


def test_backups_can_be_switched_off():
    m = render(sets=["storage.backup.enabled=false"])
    (sts,) = m.of("StatefulSet")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert "/backups" not in {v["mountPath"] for v in c["volumeMounts"]}
    assert not any(k.startswith("ZEOD_STORAGE_1_BACKUP") for k in env(c))
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]


# --- the renderers ----------------------------------------------------------


def test_rollouts_never_drop_below_the_desired_ready_count(scenario):
    name, m = scenario
    for d in m.of("Deployment"):
        strategy = d["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        surge = 2 if name == "scaled-hpa" and component.startswith("renderer") else 1
        assert strategy["rollingUpdate"]["maxSurge"] == surge


def test_hpa_owns_the_replica_count(scenario):
    name, m = scenario
    (renderer,) = m.component("renderer")
    hpas = m.of("HorizontalPodAutoscaler")
    if name == "scaled-hpa":
        (hpa,) = hpas
        assert "replicas" not in renderer["spec"]
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": renderer["metadata"]["name"]}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
        assert {x["resource"]["name"] for x in hpa["spec"]["metrics"]} == {"cpu", "memory"}
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    else:
        assert hpas == []
        assert renderer["spec"]["replicas"] == 2


def test_each_renderer_set_has_a_pdb_that_selects_it(scenario):
    name, m = scenario
    pdbs = m.of("PodDisruptionBudget")
    for component in ("renderer", "renderer-readonly"):
        for d in m.component(component):
            labels = d["spec"]["template"]["metadata"]["labels"]
            matching = [p for p in pdbs if selects(p["spec"]["selector"], labels)]
            assert len(matching) == 1, (component, matching)
            assert matching[0]["spec"]["maxUnavailable"] == ("25%" if name == "scaled-hpa" else 1)
            assert "minAvailable" not in matching[0]["spec"]
    # No PDB covers the storage node: with one replica it could only block drains.
    (sts,) = m.of("StatefulSet")
    assert not [p for p in pdbs if selects(p["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])]


def test_config_is_a_directory_mount_the_init_can_watch(scenario):
    name, m = scenario
    for d, meta, c in zeo_clients(m):
        spec = d["spec"]["template"]["spec"]
        mount = next(v for v in c["volumeMounts"] if v["name"] == "config")
        assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
        assert env(c)["ZEOD_INIT_CONFIG"] == mount["mountPath"] + "/zeod-init.yaml"
        volume = next(v for v in spec["volumes"] if v["name"] == "config")
        cm = m.get("ConfigMap", volume["configMap"]["name"])
        assert cm is not None
        assert "zeod-init.yaml" in cm["data"]
        annotations = meta.get("annotations", {})
        assert ("checksum/config" in annotations) == (name == "everything")


def test_config_change_rolls_pods_only_when_asked():
    plain = render()
    cfg = render(sets=["renderer.zeo.clientCacheSize=256MB"])
    (a,) = plain.component("renderer")
    (b,) = cfg.component("renderer")
    assert a["spec"]["template"] == b["spec"]["template"]
    rolled_a = render(sets=["renderer.config.rollOnChange=true"])
    rolled_b = render(sets=["renderer.config.rollOnChange=true", "renderer.zeo.clientCacheSize=256MB"])
    ann = [r.component("renderer")[0]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
           for r in (rolled_a, rolled_b)]
    assert ann[0] != ann[1]


def test_read_only_renderers(scenario):
    name, m = scenario
    ro = m.component("renderer-readonly")
    if name not in ("readonly-renderer", "everything"):
        assert ro == []
        return
    (ro,) = ro
    spec = ro["spec"]["template"]["spec"]
    (zope,) = spec["containers"]
    assert env(zope)["ZEO_READ_ONLY"] == "true"
    assert "initContainers" not in spec, "a read-only client cannot create the root"
    (rw,) = m.component("renderer")
    for c in containers(rw["spec"]["template"]["spec"]):
        assert env(c)["ZEO_READ_ONLY"] == "false"
    svc = m.one("Service", ro["metadata"]["name"])
    assert selects({"matchLabels": svc["spec"]["selector"]}, ro["spec"]["template"]["metadata"]["labels"])
    assert not selects({"matchLabels": svc["spec"]["selector"]}, rw["spec"]["template"]["metadata"]["labels"])


def test_bootstrap_runs_before_zope_with_the_same_environment(scenario):
    name, m = scenario
    (rw,) = m.component("renderer")
    spec = rw["spec"]["template"]["spec"]
    (boot,) = spec["initContainers"]
    (zope,) = spec["containers"]
    assert boot["image"] == zope["image"]
    e = env(boot)
    assert e.pop("ZEOD_INIT_WATCH") == "false"
    admin = {k: e.pop(k) for k in ("ZEOD_ADMIN_USER", "ZEOD_ADMIN_PASSWORD") if k in e}
    assert e == env(zope)
    assert boot["args"] == ["python", "/usr/local/share/zeod/bootstrap.py"]
    # The same volumes; only the bootstrap may write the add-ons volume.
    strip = lambda mounts: [{k: v for k, v in m.items() if k != "readOnly"} for m in mounts]
    assert strip(boot["volumeMounts"]) == strip(zope["volumeMounts"])
    for m in boot["volumeMounts"]:
        if m["name"] != "products":
            assert m in zope["volumeMounts"]
    if name == "everything":
        assert admin["ZEOD_ADMIN_USER"] == "admin"
        secret = next(x for x in boot["env"] if x["name"] == "ZEOD_ADMIN_PASSWORD")
        assert secret["valueFrom"]["secretKeyRef"] == {"name": "site-admin", "key": "password"}
    else:
        assert admin == {}
    off = render(sets=["bootstrap.enabled=false"])
    assert "initContainers" not in off.component("renderer")[0]["spec"]["template"]["spec"]


def test_blobs_streamed_or_shared(scenario):
    name, m = scenario
    shared = name in ("shared-blobs", "everything")
    (sts,) = m.of("StatefulSet")
    server_mounts = {v["mountPath"]: v["name"] for v in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    server_volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    for d, _, c in zeo_clients(m):
        spec = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mount = next(v for v in c["volumeMounts"] if v["name"] == "blobs")
        assert mount["mountPath"] == "/data/blobstorage"
        assert env(c)["ZEO_SHARED_BLOB_DIR"] == ("true" if shared else "false")
        if shared:
            claim = volumes["blobs"]["persistentVolumeClaim"]["claimName"]
            assert server_mounts["/data/blobs"] == "blobs"
            assert server_volumes["blobs"]["persistentVolumeClaim"]["claimName"] == claim
        else:
            assert "emptyDir" in volumes["blobs"]
    pvcs = {p["metadata"]["name"]: p for p in m.of("PersistentVolumeClaim")}
    if name == "shared-blobs":
        assert pvcs["zeo-zeo-appliance-blobs"]["spec"]["accessModes"] == ["ReadWriteMany"]
    if not shared:
        assert "/data/blobs" not in server_mounts


def test_products_baked_or_shared(scenario):
    name, m = scenario
    for d, _, c in zeo_clients(m):
        mounts = {v["name"]: v for v in c["volumeMounts"]}
        if name in ("shared-blobs", "everything"):
            assert mounts["products"]["mountPath"] == "/app/lib/python/Products"
            # Zope only reads add-ons; the bootstrap installs them.
            assert mounts["products"].get("readOnly", False) is (c["name"] == "zope")
        else:
            assert "products" not in mounts


# --- traffic -----------------------------------------------------------------


def test_networkpolicy_admits_exactly_the_zeo_clients(scenario):
    name, m = scenario
    (np_,) = m.of("NetworkPolicy")
    (sts,) = m.of("StatefulSet")
    assert selects(np_["spec"]["podSelector"], sts["spec"]["template"]["metadata"]["labels"])
    zeo_rule = next(r for r in np_["spec"]["ingress"] if r["ports"][0]["port"] == 8100)
    peers = [p["podSelector"] for p in zeo_rule["from"] if "podSelector" in p]

    def admitted(labels):
        return any(selects(p, labels) for p in peers)

    for _, meta, _ in m.pod_specs():
        component = meta["labels"]["app.kubernetes.io/component"]
        should = component in ("renderer", "renderer-readonly", "test")
        assert admitted(meta["labels"]) == should, component
    # Another release's renderers in the same namespace stay out.
    (rw,) = m.component("renderer")
    stranger = dict(rw["spec"]["template"]["metadata"]["labels"], **{"app.kubernetes.io/instance": "other"})
    assert not admitted(stranger)
    if name == "everything":
        assert {"podSelector": {"matchLabels": {"app": "zodb-pack"}}} in zeo_rule["from"]


def test_ingress_routes_to_the_lb_or_the_renderers_with_affinity(scenario):
    name, m = scenario
    ingresses = m.of("Ingress")
    if name not in ("ingress", "lb", "everything"):
        assert ingresses == []
        return
    (ing,) = ingresses
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = m.one("Service", backend["name"])
    assert backend["port"]["number"] in [p["port"] for p in svc["spec"]["ports"]]
    annotations = ing["metadata"].get("annotations", {})
    lb = name in ("lb", "everything")
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == ("lb" if lb else "renderer")
    assert (annotations.get("nginx.ingress.kubernetes.io/affinity") == "cookie") == (not lb)


def test_lb_resolves_the_renderers_headless_service(scenario):
    name, m = scenario
    if name not in ("lb", "everything"):
        assert m.component("lb") == []
        return
    (lb,) = m.component("lb")
    (haproxy,) = lb["spec"]["template"]["spec"]["containers"]
    cfg = {k.removeprefix("ZEOD_INIT_LB__").lower(): v for k, v in env(haproxy).items()}
    host = cfg["renderer_host"]
    svc_name, ns, svc, domain = host.split(".", 3)
    assert (ns, svc, domain) == ("site", "svc", "cluster.local")
    headless = m.one("Service", svc_name)
    assert headless["spec"]["clusterIP"] == "None"
    (rw,) = m.component("renderer")
    assert selects({"matchLabels": headless["spec"]["selector"]}, rw["spec"]["template"]["metadata"]["labels"])
    (zope,) = rw["spec"]["template"]["spec"]["containers"]
    assert int(cfg["renderer_port"]) == headless["spec"]["ports"][0]["port"] == zope["ports"][0]["containerPort"]
    assert cfg["health_path"] == zope["readinessProbe"]["httpGet"]["path"]
    assert cfg["affinity"] == "cookie"
    assert int(cfg["listen_port"]) == haproxy["ports"][0]["containerPort"]
    # The image's output_dir must be writable on a read-only root.
    assert {"name": "haproxy-cfg", "mountPath": "/usr/local/etc/haproxy"} in haproxy["volumeMounts"]


def test_metrics_wiring(scenario):
    name, m = scenario
    (sts,) = m.of("StatefulSet")
    annotations = sts["spec"]["template"]["metadata"].get("annotations", {})
    monitors = m.of("ServiceMonitor")
    if name != "everything":
        assert "prometheus.io/scrape" not in annotations
        assert monitors == []
        return
    assert annotations["prometheus.io/port"] == "9100"
    (sm,) = monitors
    svc = zeo_service(m)
    assert selects(sm["spec"]["selector"], svc["metadata"]["labels"])
    assert sm["spec"]["endpoints"][0]["port"] in [p["name"] for p in svc["spec"]["ports"]]
    assert sm["metadata"]["labels"]["release"] == "prometheus"


def test_helm_test_pod_checks_the_zeo_service(scenario):
    _, m = scenario
    (pod,) = m.of("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    svc = zeo_service(m)
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["/zeod", "health", f"{svc['metadata']['name']}:8100"]
    (sts,) = m.of("StatefulSet")
    assert c["image"] == sts["spec"]["template"]["spec"]["containers"][0]["image"]


# --- conventions ------------------------------------------------------------


def test_every_pod_and_container_is_restricted(scenario):
    _, m = scenario
    for d, _, spec in m.pod_specs():
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]


def test_labels_names_and_no_namespace(scenario):
    _, m = scenario
    for d in m:
        meta = d["metadata"]
        assert "namespace" not in meta, d["kind"]
        assert len(meta["name"]) <= 63
        for label in STANDARD_LABELS:
            assert label in meta["labels"], (d["kind"], meta["name"], label)
    for d, meta, _ in m.pod_specs():
        if d["kind"] in WORKLOADS:
            assert selects(d["spec"]["selector"], meta["labels"])


def test_image_tags_default_to_app_version(scenario):
    name, m = scenario
    for _, _, spec in m.pod_specs():
        for c in containers(spec):
            repo, _, tag = c["image"].rpartition(":")
            if name == "everything" and repo.endswith("/zeod"):
                assert tag == "9.9.9"
            else:
                assert tag == APP_VERSION, c["image"]


def test_long_release_names_still_fit():
    m = render(sets=["fullnameOverride=" + "x" * 80, "readOnlyRenderer.enabled=true", "lb.enabled=true"])
    for d in m:
        assert len(d["metadata"]["name"]) <= 63
        for v in d["metadata"]["labels"].values():
            assert len(v) <= 63


def test_schema_closes_every_object():
    """additionalProperties is false (or types a map's values) on every
    object of values.schema.json, except Kubernetes objects passed through
    verbatim, which kubernetes-validate checks after rendering."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    passthrough = {
        "seLinuxOptions", "nodeAffinity", "podAffinity", "podAntiAffinity", "valueFrom",
        "scaleUp", "scaleDown", "podSelector", "namespaceSelector", "ipBlock",
        "topologySpreadConstraints[]",
    }
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                if path.rsplit(".", 1)[-1] not in passthrough:
                    open_objects.append(path)
            for k, v in node.items():
                if k == "properties":
                    for name, sub in v.items():
                        walk(sub, f"{path}.{name}")
                elif k == "items":
                    walk(v, f"{path}[]")
                elif k in ("definitions", "oneOf", "anyOf", "allOf"):
                    for i, sub in (v.items() if isinstance(v, dict) else enumerate(v)):
                        walk(sub, f"{path}.{i}")
                elif k == "additionalProperties" and isinstance(v, dict):
                    walk(v, f"{path}.*")

    walk(schema, "$")
    assert open_objects == []


def test_lb_refuses_fewer_slots_than_renderers():
    with pytest.raises(subprocess.CalledProcessError) as e:
        render(sets=["lb.enabled=true", "lb.maxRenderers=4", "renderer.autoscaling.enabled=true",
                     "renderer.autoscaling.maxReplicas=5"])
    assert "lb.maxRenderers (4) must be at least the most renderers there can be (5)" in e.value.stderr
    with pytest.raises(subprocess.CalledProcessError):
        render(sets=["lb.enabled=true", "lb.maxRenderers=2", "renderer.replicas=3"])
    render(sets=["lb.enabled=true", "lb.maxRenderers=3", "renderer.replicas=3"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_render(scenario, tmp_path):
    """`helm template` skips NOTES.txt; render it as a template of a copy."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "notes.yaml").write_text(
        '{{- define "notes.body" }}' + notes + "{{- end }}\n"
        'notes: |\n{{ include "notes.body" . | indent 2 }}\n'
    )
    args = ["helm", "template", "zeo", str(chart), "--namespace", "site", "--show-only", "templates/notes.yaml"]
    if scenario != "defaults":
        args += ["-f", str(HERE / "values" / f"{scenario}.yaml")]
    text = yaml.safe_load(subprocess.run(args, check=True, capture_output=True, text=True).stdout)["notes"]
    assert "helm test zeo --namespace site" in text
    m = render(scenario=scenario)
    assert zeo_service(m)["metadata"]["name"] + ":8100" in text
    assert ("does not serve metrics yet" in text) == (scenario == "everything")


def test_renderers_spread_over_nodes_by_their_own_labels(scenario):
    name, m = scenario
    for component in ("renderer", "renderer-readonly"):
        for d in m.component(component):
            pod = d["spec"]["template"]
            constraints = pod["spec"]["topologySpreadConstraints"]
            assert constraints, component
            for c in constraints:
                assert selects(c["labelSelector"], pod["metadata"]["labels"])
                assert c["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
            if name == "defaults":
                assert constraints[0]["whenUnsatisfiable"] == "ScheduleAnyway"
