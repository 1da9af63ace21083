"""The committed runs are what the committed code and params make: no `dvc.lock` names older code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

LOCKS = ("dvc.lock", "domains/truthfulqa/dvc.lock", "domains/alpaca/dvc.lock")


def _value(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def _same(a, b) -> bool:
    """Equal values; a float that PyYAML reads back as a string ('2e-05', YAML 1.1 wants a dot) too."""
    if a == b:
        return True
    try:
        return not isinstance(a, (bool, dict, list)) and float(a) == float(b)
    except (TypeError, ValueError):
        return False


def stale_entries(lock: Path) -> list[str]:
    """'stage: what' for every code dependency whose bytes, or listed param whose value, differ from the lock's."""
    stages = yaml.safe_load(lock.read_text(encoding="utf-8"))["stages"]
    out = []
    for name, stage in stages.items():
        for dep in stage.get("deps", []):
            path = lock.parent / dep["path"]
            if path.suffix == ".py" and (
                not path.is_file() or hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]
            ):
                out.append(f"{name}: {dep['path']}")
        for file, values in stage.get("params", {}).items():
            params = yaml.safe_load((lock.parent / file).read_text(encoding="utf-8"))
            for key, value in values.items():
                try:
                    now = _value(params, key)
                except (KeyError, TypeError):
                    now = "<missing>"
                if not _same(now, value):
                    out.append(f"{name}: {file} {key}")
    return out


@pytest.mark.parametrize("lock", LOCKS)
def test_a_committed_run_was_made_by_the_committed_code_and_params(lock: str) -> None:
    stale = stale_entries(REPO / lock)
    folder = str(Path(lock).parent)
    rerun = "dvc repro" if folder == "." else f"dvc repro {lock.replace('.lock', '.yaml')}"
    assert not stale, f"{lock} is older than {len(stale)} inputs (rerun `{rerun}` and commit): {', '.join(stale[:8])}"


def test_a_changed_module_or_param_is_named(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text("a:\n  b: 2\n  c: [1, 2]\n  lr: 2.0e-5\n")
    digest = hashlib.md5(b"x = 1\n").hexdigest()
    lock = {
        "schema": "2.0",
        "stages": {
            "s": {
                "cmd": "python m.py",
                "deps": [{"path": "m.py", "md5": digest}, {"path": "data.parquet", "md5": "0" * 32}],
                "params": {"params.yaml": {"a.b": 2, "a.c": [1, 2], "a.lr": "2e-05"}},  # as DVC writes it
            }
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert stale_entries(tmp_path / "dvc.lock") == []  # a data dependency is DVC's to check, not this test's
    (tmp_path / "m.py").write_text("x = 2\n")
    (tmp_path / "params.yaml").write_text("a:\n  b: 3\n  c: [1, 2]\n  lr: 2.0e-5\n")
    assert stale_entries(tmp_path / "dvc.lock") == ["s: m.py", "s: params.yaml a.b"]
    (tmp_path / "m.py").unlink()
    (tmp_path / "params.yaml").write_text("a:\n  c: [1, 2]\n  lr: 3.0e-5\n")
    assert stale_entries(tmp_path / "dvc.lock") == ["s: m.py", "s: params.yaml a.b", "s: params.yaml a.lr"]
