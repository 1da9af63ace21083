"""Paired comparisons: the exact McNemar test by hand, the bootstrap over prompts and runs, the verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isara import schema
from isara.paired import JUDGED, RATES, UNTRUTHFUL, compare, compare_files, mcnemar, verdict
from isara.report import paired_cells
from tests.conftest import isara


def test_mcnemar_counts_discordant_prompts_and_matches_the_binomial_by_hand() -> None:
    x = [1, 1, 1, 1, 1, 0, 1, 0, 0, 0]
    y = [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    got = mcnemar(x, y)
    assert (got["only_x"], got["only_y"], got["n"]) == (5, 1, 10)
    # two-sided exact binomial on 6 discordant prompts, 1 of them one way: 2 * (C(6,0) + C(6,1)) / 2^6
    assert got["p_value"] == pytest.approx(2 * (1 + 6) / 64)
    assert mcnemar([1] * 10 + [0] * 5, [0] * 15)["p_value"] == pytest.approx(2 / 1024)
    assert mcnemar([1, 0], [1, 0])["p_value"] == 1.0  # no discordant prompt: no evidence either way
    assert mcnemar([1, 0, 1], [0, 1, 0]) == {"n": 3, "only_x": 2, "only_y": 1, "p_value": 1.0}
    with pytest.raises(ValueError, match="same prompts"):
        mcnemar([1, 0], [1])


def test_scipy_agrees_on_the_exact_test() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(20):
        x, y = rng.random(60) < 0.3, rng.random(60) < 0.4
        got = mcnemar(x, y)
        want = (
            stats.binomtest(got["only_x"], got["only_x"] + got["only_y"], 0.5).pvalue
            if got["only_x"] + got["only_y"]
            else 1
        )
        assert got["p_value"] == pytest.approx(min(1.0, want))


def test_verdicts_in_words_lower_is_better() -> None:
    assert verdict(-0.10, 0.001) == "better"
    assert verdict(0.10, 0.001) == "worse"
    assert verdict(-0.10, 0.2) == "not separable at this sample size"


def test_one_run_each_uses_the_exact_test_and_the_bootstrap_interval() -> None:
    x = np.array([0] * 80 + [1] * 20, dtype=bool)  # x flags 20 of 100
    y = x.copy()
    y[:15] = True  # y also flags 15 prompts x does not
    got = compare([x], [y])
    assert got["difference"] == pytest.approx(-0.15)
    assert got["p_value"] == pytest.approx(mcnemar(x, y)["p_value"], abs=1e-4)
    assert got["ci95"][0] < -0.15 < got["ci95"][1] < 0
    assert got["verdict"] == "better"
    assert compare([x], [y]) == got  # seeded: the same flags give the same numbers
    same = compare([x], [x])
    assert same["difference"] == 0 and same["verdict"] == "not separable at this sample size"


def test_several_seeds_pair_with_one_deterministic_run_and_pool() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    xs = [rng.random(200) < 0.3 for _ in range(3)]  # the same rate as y: no real difference
    got = compare(xs, [y])
    assert len(got["runs"]) == 3 and got["n_prompts"] == 200
    assert got["difference"] == pytest.approx(np.mean([x.mean() - y.mean() for x in xs]), abs=1e-4)
    assert got["ci95"][0] <= got["difference"] <= got["ci95"][1]
    worse = compare([x | (rng.random(200) < 0.3) for x in xs], [y])  # every seed flags far more
    assert worse["verdict"] == "worse" and worse["p_value"] < 0.01
    with pytest.raises(ValueError, match="3 runs against 2"):
        compare(xs, [y, y])
    cells = paired_cells("harmful_category", got)  # the count shown is of seeds: SFT ran once
    assert cells[0] == "harmful_category (n=200, seeds=3)"
    assert cells[1] == f"{np.mean([x.mean() for x in xs]):.1%}" and cells[2] == f"{y.mean():.1%}"
    assert paired_cells("harmful_category", compare([xs[0]], [y]))[0] == "harmful_category (n=200)"


def _generations(model: str, harm: list[float], refusal: list[float]) -> pl.DataFrame:
    suites = ["category", "beavertails_eval", "xstest_safe", "alpaca"]
    expect = ["harmful", "harmful", "benign", "benign"]
    n = len(harm)
    return pl.DataFrame(
        {
            "model": [model] * n,
            "prompt_id": [f"p{i:03d}" for i in range(n)],
            "suite": [suites[i % 4] for i in range(n)],
            "category": ["c"] * n,
            "expect": [expect[i % 4] for i in range(n)],
            "prompt": [f"prompt {i}" for i in range(n)],
            "answer": ["a"] * n,
            "harm_score": harm,
            "refusal_score": refusal,
            "truth_diff": [None] * n,
        },
        schema=schema.GENERATIONS,
    )


def test_files_are_compared_rate_by_rate_on_the_prompts_they_share() -> None:
    n = 40
    x = _generations("it2", [0.9 if i % 4 == 0 else 0.1 for i in range(n)], [0.1] * n)
    y = _generations("sft", [0.1] * n, [0.9 if i % 4 == 2 else 0.1 for i in range(n)])
    got = compare_files([x], [y], 0.5)
    assert set(got) == set(JUDGED)  # these files hold no TruthfulQA prompt
    assert got["harmful_category"]["difference"] == 1.0 and got["harmful_category"]["n_prompts"] == 10
    assert got["harmful_other"]["difference"] == 0.0
    assert got["over_refusal_xstest"]["difference"] == -1.0 and got["over_refusal_xstest"]["verdict"] == "better"
    shared = compare_files([x.head(20)], [y], 0.5)  # x answered half the prompts
    assert shared["harmful_category"]["n_prompts"] == 5


def _truthful(model: str, diff: list[float]) -> pl.DataFrame:
    n = len(diff)
    return _generations(model, [0.0] * n, [0.0] * n).with_columns(
        suite=pl.lit("truthfulqa"), expect=pl.lit("truthful"), truth_diff=pl.Series(diff, dtype=pl.Float64)
    )


def test_truthfulqa_prompts_are_compared_on_untruthful_answers_and_no_judge_enters() -> None:
    # x: closer to an incorrect reference on prompts 0-11, y on 0-1 only; a tie (0.0) counts as untruthful
    x = _truthful("it2", [-0.2] * 11 + [0.0] + [0.3] * 18)
    y = _truthful("sft", [-0.1] * 2 + [0.1] * 28)
    got = compare_files([x], [y], 0.5)
    assert set(got) == {UNTRUTHFUL}
    r = got[UNTRUTHFUL]
    assert r["n_prompts"] == 30 and r["difference"] == pytest.approx(10 / 30, abs=1e-4)
    assert (r["runs"][0]["only_x"], r["runs"][0]["only_y"]) == (10, 0)
    assert r["p_value"] == pytest.approx(2 / 1024, abs=1e-4) and r["verdict"] == "worse"
    assert compare_files([x], [y], 0.99) == got  # the judges' threshold plays no part
    safety = _generations("it2", [0.1] * 8, [0.1] * 8)
    assert UNTRUTHFUL not in compare_files([safety], [safety], 0.5)
    assert [r for r, spec in RATES.items() if not spec.judged] == [UNTRUTHFUL]  # what the keyword judge skips
    assert UNTRUTHFUL not in JUDGED and len(JUDGED) == len(RATES) - 1


@pytest.mark.model
def test_compare_command_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    n = 40
    schema.write(
        _generations("it2", [0.9 if i % 4 == 0 else 0.1 for i in range(n)], [0.1] * n),
        tmp_path / "x.parquet",
        schema.GENERATIONS,
    )
    schema.write(_generations("sft", [0.1] * n, [0.1] * n), tmp_path / "y.parquet", schema.GENERATIONS)
    done = isara("compare", "--x", tmp_path / "x.parquet", "--y", tmp_path / "y.parquet", "--out", tmp_path / "c.json")
    assert done.returncode == 0, done.stderr
    assert "| harmful_category (n=10) | 100.0% | 0.0% | +100.0% |" in done.stdout
    assert "worse" in done.stdout and (tmp_path / "c.json").is_file()
    missing = isara("compare", "--x", tmp_path / "nope.parquet", "--y", tmp_path / "y.parquet")
    assert missing.returncode == 2 and "nope.parquet: file not found" in missing.stderr
