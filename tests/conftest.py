"""Shared helpers: the real `isara` console script and a params file pinned for tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ISARA = REPO / ".venv" / "bin" / "isara"


def isara(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the installed console script, offline, as a user would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(ISARA), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one stderr line of a failed command; fails the test on a traceback or several lines."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("isara: error: "), lines[0]
    return lines[0]


def base_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def seed_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed params with the two seed limits pinned, so seed tests do not drift with params.yaml."""
    raw = base_params()
    raw["contexts"] = 4
    raw["data"]["max_seed_rows"] = 50
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged base model converted once per test session (models/it0 as prepare_model writes it)."""
    from isara.models import convert_base

    out = tmp_path_factory.mktemp("models") / "it0"
    convert_base("smollm2", out)
    return out


def copy_project(dst: Path) -> None:
    """What a pipeline run needs of this checkout (code, pipeline, params, raw data), copied into dst."""
    for name in (
        "isara",
        "stages",
        "profiles",
        "dvc.yaml",
        "params.yaml",
        ".dvc/config",
        ".dvc/.gitignore",
        ".dvcignore",
    ):
        src = REPO / name
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    shutil.copytree(REPO / "data/raw", dst / "data/raw")
