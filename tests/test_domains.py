"""Domain folders: derived from the root pipeline, never drifting from it; bad requests fail on one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from isara.config import Iteration, load_params
from isara.domain import derive
from isara.paths import isara_rounds
from tests.conftest import REPO, error_line, isara

DOMAINS = sorted(p.parent for p in (REPO / "domains").glob("*/dvc.yaml"))


def test_the_paper_domains_are_committed() -> None:
    assert {d.name for d in DOMAINS} >= {"truthfulqa", "alpaca"}


@pytest.mark.parametrize("folder", DOMAINS, ids=lambda p: p.name)
def test_domain_pipeline_is_the_root_one_seen_from_its_folder(folder: Path) -> None:
    root = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    committed = yaml.safe_load((folder / "dvc.yaml").read_text(encoding="utf-8"))
    iterations = load_params(folder / "params.yaml").iterations
    assert committed == derive(root, "../../", iterations), f"run `isara domain {folder.name} --refresh`"
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


def test_the_matched_control_runs_over_the_isara_rounds_of_each_pipeline() -> None:
    """sft_matched@<round> for each ISARA round, each from the previous one's model; its last is the baseline."""
    for folder in [REPO, *DOMAINS]:
        pipeline = yaml.safe_load((folder / "dvc.yaml").read_text(encoding="utf-8"))
        rounds = isara_rounds(load_params(folder / "params.yaml").iterations)
        assert pipeline["stages"]["sft_matched"]["foreach"] == {n: {"init": p.as_posix()} for n, p in rounds.items()}
        assert pipeline["stages"]["baseline"]["foreach"]["sft_matched"] == {
            "model": f"models/sft_matched/{[*rounds][-1]}"
        }


def test_isara_rounds_leave_out_the_one_shot_baseline_and_rounds_after_it() -> None:
    def its(**spec: tuple) -> dict[str, Iteration]:
        return {n: Iteration(k=k, prev=p, scale=s, extends=e) for n, (k, p, s, e) in spec.items()}

    default = its(it1=(1, 0, 1, "it0"), it2=(2, 1, 1, "it0"), oneshot=(1, 0, 2, "it1"))
    assert {n: p.as_posix() for n, p in isara_rounds(default).items()} == {
        "it1": "models/it0", "it2": "models/sft_matched/it1"
    }  # fmt: skip
    assert list(isara_rounds(its(it1=(1, 0, 2, "it0"), it2=(2, 1, 1, "it0")))) == []  # it1 proposes twice over
    root = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    three = its(it1=(1, 0, 1, "it0"), it2=(2, 1, 1, "it0"), it3=(3, 2, 1, "it0"))
    stages = derive(root, "../../", three)["stages"]
    assert list(stages["sft_matched"]["foreach"]) == ["it1", "it2", "it3"]
    assert stages["baseline"]["foreach"]["sft_matched"] == {"model": "models/sft_matched/it3"}
    stages = derive(root, "../../", its(oneshot=(1, 0, 2, "it0")))["stages"]
    assert "sft_matched" not in stages and "sft_matched" not in stages["baseline"]["foreach"]
