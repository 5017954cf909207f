#!/usr/bin/env bash
# Creates (once per requirements version) the venv of pinned Python peers and
# prints the path of its python. Cached under ~/.cache/zeod so CI runs on the
# same machine reuse it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${ZEOD_BASE_PYTHON:-}
if [ -z "$py" ]; then
  for c in "$HOME/.pyenv/versions/3.11.7/bin/python3" python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1; then py=$(command -v "$c"); break; fi
  done
fi
key=$( (cat "$here/requirements.txt"; "$py" --version) | sha256sum | cut -c1-12)
venv=${ZEOD_VENV:-$HOME/.cache/zeod/venv-$key}
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  "$py" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
