"""Shared helpers: the real `isara` console script and a params file pinned for tests."""

from __future__ import annotations

import importlib.abc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ISARA = REPO / ".venv" / "bin" / "isara"

# --- the fast tier (`make test-fast`): no model loaded, no process started, by construction ------

FAST = os.environ.get("ISARA_FAST") == "1"
# Modules whose every test loads a model or starts a process: not even collected in the fast tier.
MODEL_MODULES = ("test_bad_inputs.py", "test_device.py", "test_distributed.py", "test_judges.py", "test_remote.py")
collect_ignore = ["test_pipeline.py", *MODEL_MODULES] if FAST else []
HEAVY = ("torch", "transformers", "sentence_transformers", "accelerate", "peft", "ray", "vllm")


class _NoHeavyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"the fast tier loads no model: importing {name}; mark the test @pytest.mark.model")
        return None


def _no_process(*args, **kwargs):
    raise RuntimeError("the fast tier starts no process; mark the test @pytest.mark.model")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test of a MODEL_MODULES file is a `model` test, whatever the tier."""
    for item in items:
        if item.path.name in MODEL_MODULES:
            item.add_marker(pytest.mark.model)


def pytest_collection_finish(session: pytest.Session) -> None:
    """In the fast tier a test that imports a model library or starts a process fails, naming the fix."""
    if FAST:
        sys.meta_path.insert(0, _NoHeavyImports())
        subprocess.Popen.__init__ = _no_process  # type: ignore[method-assign]


def isara(*args: str | Path, cwd: Path = REPO, timeout: int = 60) -> subprocess.CompletedProcess:
    """Run the installed console script, offline, as a user would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [str(ISARA), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one stderr line of a failed command; fails the test on a traceback or several lines."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("isara: error: "), lines[0]
    return lines[0]


def sizes(data):
    """The data params prepare_data reads, from a DataParams (the stage names each one)."""
    from isara.prepare_data import Sizes

    return Sizes(**{f: getattr(data, f) for f in Sizes._fields})


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


# SmolLM2's architecture (tied embeddings, its tokenizer and chat template) at gpu_check's tiny
# shape, randomly initialised: for tests of training mechanics (resuming, accumulation, ranks
# agreeing), which hold at any size, at a fraction of the compute. SmolLM2's config also fixes the
# key/value heads and the head width, so they follow the width too.
SMALL = {"num_key_value_heads": 4, "head_dim": 16}


@pytest.fixture(scope="session")
def small(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/it0 as prepare_model writes it, with SmolLM2 shrunk to SMALL and seeded weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tools.gpu_check import SHAPES

    out = tmp_path_factory.mktemp("small") / "it0"
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("*.safetensors"))
    cfg = AutoConfig.from_pretrained(base)
    cfg.update({**SHAPES["llama-tiny"], **SMALL})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    return out


def copy_project(dst: Path) -> None:
    """What a pipeline run needs of this checkout (code, pipeline, params, raw data), copied into dst."""
    for name in (
        "isara",
        "stages",
        "tools",
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
