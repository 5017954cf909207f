"""The values table of the chart's README, from the `# --` comments in
values.yaml (the helm-docs convention, without needing helm-docs).

    python3 values_table.py --write CHART   rewrites the table in README.md
    python3 values_table.py --check CHART   fails if a value has no `# --`
                                            comment or the table is stale
"""

import json
import re
import sys
from pathlib import Path

import yaml

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")
PIPE = "\\|"
DOC = re.compile(r"^ *# -- (?P<text>.*)$")


def documented_keys(text):
    """Yields (dotted key, description) for each key a `# --` line precedes."""
    stack = []  # (indent, key)
    pending = None
    for line in text.splitlines():
        doc = DOC.match(line)
        if doc:
            pending = doc["text"].strip()
            continue
        m = KEY.match(line)
        if not m:
            if line.strip() and not line.strip().startswith(("#", "-")):
                pending = None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        path = ".".join(k for _, k in stack)
        yield path, pending
        pending = None


def lookup(values, path):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def type_name(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def leaves(values, prefix=""):
    """Dotted paths of values a user sets as a whole (scalars, lists, {})."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            # A non-empty map documented as a whole (resources, securityContext)
            # is a leaf too; check_docs decides by whether it has a `# --`.
            yield path, True
            yield from leaves(value, path + ".")
        else:
            yield path, False


def table(chart):
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    docs = dict(documented_keys(text))
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    missing = []
    documented_maps = set()
    for path, is_map in leaves(values):
        if any(path.startswith(m + ".") for m in documented_maps):
            continue
        doc = docs.get(path)
        if is_map and doc is None:
            continue
        if doc is None:
            missing.append(path)
            continue
        if is_map:
            documented_maps.add(path)
        value = lookup(values, path)
        default = json.dumps(value, separators=(",", ":")).replace("|", PIPE)
        rows.append(f"| {path} | {type_name(value)} | `{default}` | {doc.replace('|', PIPE)} |")
    return "\n".join(rows) + "\n", missing


def main(argv):
    if len(argv) != 3 or argv[1] not in ("--check", "--write"):
        print(__doc__, file=sys.stderr)
        return 2
    chart = Path(argv[2])
    generated, missing = table(chart)
    for path in missing:
        print(f"values.yaml: {path} has no '# --' comment", file=sys.stderr)
    readme = chart / "README.md"
    text = readme.read_text()
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        print(f"{readme}: no {START} ... {END} markers", file=sys.stderr)
        return 1
    updated = f"{head}{START}\n{generated}{END}{tail}"
    if argv[1] == "--write":
        readme.write_text(updated)
        return 1 if missing else 0
    if updated != text:
        print(f"{readme}: the values table differs from values.yaml", file=sys.stderr)
        return 1
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
