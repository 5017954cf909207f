#!/usr/bin/env bash
# Creates (once per requirements version) a Python 2.7 venv with ZEO 4 and
# ZODB 4 (or, with the argument "zodb3", ZODB3 3.10: a Z3101 client) and
# prints the path of its python. Python 2.7 comes from pyenv
# (ZEOD_PY27 overrides); virtualenv and pip are pinned wheels from PyPI, the
# last releases that still run on and create Python 2.7. Cached under
# ~/.cache/zeod like tests/python/venv.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
flavor=${1:-zeo4}
case $flavor in
  zeo4) requirements=$here/requirements.txt ;;
  zodb3) requirements=$here/requirements-zodb3.txt ;;
  *) echo "tests/legacy/venv.sh: unknown flavor $flavor (zeo4, zodb3)" >&2; exit 2 ;;
esac
py27=${ZEOD_PY27:-}
if [ -z "$py27" ]; then
  for c in "$HOME/.pyenv/versions/2.7.18/bin/python2.7" python2.7; do
    if command -v "$c" >/dev/null 2>&1; then py27=$(command -v "$c"); break; fi
  done
fi
if [ -z "$py27" ]; then
  echo "tests/legacy/venv.sh: no Python 2.7 (install pyenv's 2.7.18 or set ZEOD_PY27)" >&2
  exit 1
fi
virtualenv_pin=virtualenv==20.15.1
pip_pin=pip==20.3.4
setuptools_pin=setuptools==44.1.1
wheel_pin=wheel==0.37.1
key=$( (cat "$requirements"; echo "$virtualenv_pin $pip_pin $setuptools_pin"; "$py27" --version 2>&1) | sha256sum | cut -c1-12)
cache=$HOME/.cache/zeod
venv=$cache/venv27-$flavor-$key
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  # virtualenv itself, installed beside (not into) the base interpreter.
  tools=$cache/virtualenv27-${virtualenv_pin#virtualenv==}
  if [ ! -f "$tools/.complete" ]; then
    rm -rf "$tools"
    "$py27" -m pip install -q --disable-pip-version-check --no-warn-script-location \
      --target "$tools" "$virtualenv_pin" >&2
    touch "$tools/.complete"
  fi
  PYTHONPATH=$tools "$py27" -m virtualenv -q --no-periodic-update \
    --pip "${pip_pin#pip==}" --setuptools "${setuptools_pin#setuptools==}" \
    --wheel "${wheel_pin#wheel==}" "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --no-warn-script-location \
    -r "$requirements" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
