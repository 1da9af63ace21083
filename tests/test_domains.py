"""Domain folders: derived from the root pipeline, never drifting from it; bad requests fail on one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from isara.domain import derive
from tests.conftest import REPO, error_line, isara

DOMAINS = sorted(p.parent for p in (REPO / "domains").glob("*/dvc.yaml"))


def test_the_paper_domains_are_committed() -> None:
    assert {d.name for d in DOMAINS} >= {"truthfulqa", "alpaca"}


@pytest.mark.parametrize("folder", DOMAINS, ids=lambda p: p.name)
def test_domain_pipeline_is_the_root_one_seen_from_its_folder(folder: Path) -> None:
    root = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    committed = yaml.safe_load((folder / "dvc.yaml").read_text(encoding="utf-8"))
    assert committed == derive(root, "../../"), f"run `isara domain {folder.name} --refresh`"
    assert "prepare_data" not in committed["stages"]
    for name, body in committed["stages"].items():
        spec = body.get("do", body)
        assert spec["cmd"].startswith("python ../../stages/"), name
        assert not [d for d in spec.get("deps", []) if d.startswith(("stages/", "isara/", "data/raw"))], name


@pytest.mark.model
@pytest.mark.parametrize("folder", DOMAINS, ids=lambda p: p.name)
def test_domain_params_validate_and_read_shared_data_from_the_root(folder: Path) -> None:
    result = isara("validate", "--params", folder / "params.yaml")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8"))["data"]
    assert data["raw_dir"] == "../../data/raw" and data["seed_file"].startswith("../../")


def test_derive_rewrites_only_code_and_raw_data() -> None:
    root = {
        "stages": {
            "prepare_data": {"cmd": "python stages/prepare_data.py", "deps": ["data/raw"]},
            "train": {
                "foreach": "${iterations}",
                "do": {"cmd": "python stages/train.py --run ${key}", "deps": ["isara/train.py", "models/it0"]},
            },
        },
        "plots": [{"x": "metrics/plots/models.csv"}],
    }
    out = derive(root, "../../")
    assert list(out["stages"]) == ["train"]
    assert out["stages"]["train"]["do"] == {
        "cmd": "python ../../stages/train.py --run ${key}",
        "deps": ["../../isara/train.py", "models/it0"],
    }
    assert out["plots"] == root["plots"] and root["stages"]["train"]["do"]["deps"][0] == "isara/train.py"


@pytest.mark.model
def test_bad_domain_requests_fail_on_one_line(tmp_path: Path) -> None:
    assert "file not found" in error_line(isara("domain", "x", "--seed", "nope.parquet", "--eval", "nope.parquet"))
    assert "use letters" in error_line(isara("domain", "../x", "--seed", "a", "--eval", "b"))
    line = error_line(
        isara(
            "domain",
            "x",
            "--seed",
            "data/prepared/seed_truthfulqa.parquet",
            "--eval",
            "data/prepared/eval_truthfulqa.parquet",
            "--set",
            "evaluate.max_per_suite=0",
        )
    )
    assert "max_per_suite" in line and not (REPO / "domains/x").exists()
    bad = tmp_path / "prompts.csv"
    bad.write_text("prompt\nWhat is 2+2?\n  \n", encoding="utf-8")
    assert "row 2: 'prompt' is blank" in error_line(isara("eval", "import", bad, "--out", tmp_path / "e.parquet"))
    assert "not one of" in error_line(isara("eval", "import", bad, "--expect", "nice", "--out", tmp_path / "e.parquet"))
    assert not (tmp_path / "e.parquet").exists()
