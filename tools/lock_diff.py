"""What moved between two dvc.lock files: every output's hash, and every dependency that is not code.

    python tools/lock_diff.py OLD_LOCK NEW_LOCK

Outputs are matched by path (a stage may be renamed). A refactor that changes no behaviour moves
only the hashes of code dependencies (stages/, isara/) and the params lists; every output and
metrics file keeps its hash. Exits 1 when an output differs or is missing on either side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

CODE = ("stages/", "isara/", "../../stages/", "../../isara/")


def entries(lock: dict, kind: str) -> dict[str, str]:
    """path -> md5 of every `outs` (or `deps`) entry of every stage."""
    out = {}
    for stage in lock.get("stages", {}).values():
        for item in stage.get(kind, []):
            out[item["path"]] = item.get("md5", "")
    return out


def diff(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(problems, notes): output hashes that differ or are missing; data deps that moved."""
    problems, notes = [], []
    a, b = entries(old, "outs"), entries(new, "outs")
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            problems.append(f"{path}: only in the old lock")
        elif path not in a:
            problems.append(f"{path}: only in the new lock")
        elif a[path] != b[path]:
            problems.append(f"{path}: {a[path]} -> {b[path]}")
    da, db = entries(old, "deps"), entries(new, "deps")
    for path in sorted(da.keys() & db.keys()):
        if da[path] != db[path] and not path.startswith(CODE):
            notes.append(f"dependency {path}: {da[path]} -> {db[path]}")
    code = sorted(p for p in da.keys() | db.keys() if p.startswith(CODE) and da.get(p) != db.get(p))
    notes.append(f"{len(a)} outputs compared; {len(code)} code dependencies moved")
    return problems, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args()
    old, new = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (args.old, args.new))
    problems, notes = diff(old, new)
    print("\n".join(problems + notes))
    print("every output byte-identical" if not problems else f"{len(problems)} output(s) differ")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
