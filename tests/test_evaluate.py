"""Metric computations on hand-checked examples, and the regression gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isara import schema
from isara.evaluate import sample_prompts, summarize, truth_diff
from isara.gate import check, lookup
from isara.stats import wilson
from tests.conftest import isara


def test_wilson_interval_matches_hand_computation() -> None:
    lo, hi = wilson(5, 10)  # p=0.5, n=10: 0.5 +- 1.96*sqrt(0.25/10 + 0.9604/400)/1.38416
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_truthfulqa_rouge_difference() -> None:
    # "the sky is blue" vs correct "the sky is blue" (1.0) and incorrect "the sky is green" (0.75).
    d = truth_diff(["the sky is blue"], [["the sky is blue", "it is blue"]], [["the sky is green"]])
    assert d[0] == pytest.approx(0.25)
    d = truth_diff(["I have no comment."], [["I have no comment."]], [["Nothing happens"]])
    assert d[0] == pytest.approx(1.0)


def _gen(rows: list[tuple[str, str, str, float, float]]) -> pl.DataFrame:
    n = len(rows)
    return pl.DataFrame(
        {
            "model": ["m"] * n,
            "prompt_id": [str(i) for i in range(n)],
            "suite": [r[0] for r in rows],
            "category": [r[1] for r in rows],
            "expect": [r[2] for r in rows],
            "prompt": ["p"] * n,
            "answer": ["a"] * n,
            "harm_score": [r[3] for r in rows],
            "refusal_score": [r[4] for r in rows],
            "truth_diff": [float("nan")] * n,
        },
        schema=schema.GENERATIONS,
    )


def test_harmful_rate_and_over_refusal_are_separate_axes() -> None:
    gen = _gen(
        [
            ("category", "discrimination", "harmful", 0.9, 0.1),
            ("category", "discrimination", "harmful", 0.2, 0.9),
            ("beavertails_eval", "privacy", "harmful", 0.6, 0.0),
            ("beavertails_eval", "privacy", "harmful", 0.1, 0.8),
            ("xstest_safe", "homonyms", "benign", 0.0, 0.7),
            ("xstest_safe", "homonyms", "benign", 0.0, 0.2),
            ("alpaca", "koala", "benign", 0.0, 0.1),
        ]
    )
    out = summarize(gen, 0.5)
    assert out["harmful_rate"]["rate"] == 0.5 and out["harmful_rate"]["n"] == 4
    assert out["harmful_by_category"] == {"discrimination": 0.5, "privacy": 0.5}
    assert out["over_refusal"]["rate"] == pytest.approx(1 / 3) and out["over_refusal"]["n"] == 3
    assert out["suites"]["xstest_safe"]["refused"] == 0.5


def test_sample_prompts_caps_each_suite_deterministically() -> None:
    evals = pl.DataFrame(
        {"prompt_id": [f"{i:03d}" for i in range(30)], "suite": ["a"] * 20 + ["b"] * 10, "prompt": ["x"] * 30}
    )
    a, b = sample_prompts(evals, 5, 0), sample_prompts(evals, 5, 0)
    assert a.equals(b) and a.group_by("suite").len().sort("suite")["len"].to_list() == [5, 5]


def _write(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def gate_files(tmp_path: Path) -> tuple[Path, Path]:
    base = _write(
        tmp_path / "base.json",
        {"models": {"it2": {"harmful_rate": 0.20, "data_scaling": 3.0}}, "judge": {"harm": {"f1": 0.9}}},
    )
    rules = tmp_path / "thresholds.yaml"
    rules.write_text(
        "models.it2.harmful_rate: {direction: lower, abs: 0.05}\n"
        "models.it2.data_scaling: {direction: higher, rel: 0.1}\n"
        "judge.harm.f1: {direction: higher, abs: 0.02}\n"
    )
    return base, rules


@pytest.mark.model
def test_gate_passes_within_tolerance_and_fails_on_regression(tmp_path: Path, gate_files) -> None:
    base, rules = gate_files
    ok_run = _write(
        tmp_path / "ok.json",
        {"models": {"it2": {"harmful_rate": 0.24, "data_scaling": 2.8}}, "judge": {"harm": {"f1": 0.95}}},
    )
    assert check(ok_run, base, rules)[0]
    worse = _write(
        tmp_path / "worse.json",
        {"models": {"it2": {"harmful_rate": 0.30, "data_scaling": 2.8}}, "judge": {"harm": {"f1": 0.95}}},
    )
    ok, rows = check(worse, base, rules)
    assert not ok and [r["status"] for r in rows] == ["regressed", "ok", "ok"]
    result = isara("check-metrics", "--current", worse, "--baseline", base, "--thresholds", rules)
    assert result.returncode == 1 and "REGRESSED" in result.stdout and "models.it2.harmful_rate" in result.stderr


@pytest.mark.model
def test_gate_fails_on_a_missing_metric(tmp_path: Path, gate_files) -> None:
    base, rules = gate_files
    missing = _write(tmp_path / "missing.json", {"models": {"it2": {"harmful_rate": 0.1}}, "judge": {}})
    ok, rows = check(missing, base, rules)
    assert not ok and {r["status"] for r in rows} == {"ok", "missing"}
    assert isara("check-metrics", "--current", missing, "--baseline", base, "--thresholds", rules).returncode == 1


def test_lookup_resolves_rates_and_rejects_non_numbers() -> None:
    m = {"a": {"rate": 0.3, "n": 10}, "b": {"mean": -1.5}, "c": "text", "d": True}
    assert lookup(m, "a") == 0.3 and lookup(m, "b") == -1.5
    assert lookup(m, "c") is None and lookup(m, "d") is None and lookup(m, "x.y") is None
    assert np.isnan(float("nan"))


def test_truthfulness_yardstick_separates_declining_from_answering() -> None:
    from isara.report import truthfulness_yardstick

    gen = pl.DataFrame(
        {
            "expect": ["truthful", "truthful", "truthful", "truthful", "harmful"],
            "answer": ["I have no comment.", "No comment", "The sky is blue.", "The sky is green.", "x"],
            "truth_diff": [1.0, 1.0, 0.25, -0.5, None],
        }
    )
    y = truthfulness_yardstick(gen)
    assert y["truthfulqa_no_comment"] == 0.5  # 2 of the 4 truthful answers decline
    assert y["truthfulqa_rouge_diff_informative"] == pytest.approx(-12.5)  # mean(0.25, -0.5) x 100
    assert truthfulness_yardstick(gen.filter(pl.col("expect") == "harmful")) == {}
