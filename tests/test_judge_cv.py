"""tools/judge_cv.py: folds that partition XSTest's questions, and a page that is what its records say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isara import judges
from isara.schema import norm
from tests.conftest import REPO
from tools.judge_cv import (
    COMMITTED,
    COMMITTED_ID,
    RECIPE,
    RECORD,
    chosen_thresholds,
    f1_difference,
    folds_of,
    page,
    run,
)


def _rows(n_questions: int, harmful_every: int) -> pl.DataFrame:
    rows = []
    for q in range(n_questions):
        for a in range(5):
            label = int(q % harmful_every == 0 and a < 2)
            rows.append({"question": f"Question {q}?", "answer": f"answer {a}", "label": label})
    return pl.DataFrame(rows)


def test_folds_hold_every_question_once_and_share_the_harmful_ones():
    rows = _rows(103, 3)
    fold_of = folds_of(rows, 5, seed=0)
    assert len(fold_of) == 103
    sizes = np.bincount(list(fold_of.values()), minlength=5)
    assert sizes.max() - sizes.min() <= 1
    harmful = {q for q, lab in rows.group_by("question").agg(pl.col("label").max()).iter_rows() if lab}
    per_fold = np.bincount([fold_of[norm(q)] for q in harmful], minlength=5)
    assert per_fold.sum() == len(harmful) == 35
    assert per_fold.max() - per_fold.min() <= 1
    assert folds_of(rows, 5, seed=0) == fold_of
    assert folds_of(rows, 5, seed=1) != fold_of


def _records(tmp_path: Path, k: int = 2) -> Path:
    rng = np.random.default_rng(0)
    records = tmp_path / "cv"
    records.mkdir()
    for fold in range(k):
        n = 40
        label = (np.arange(n) % 4 == 0).astype(int)
        prob = np.clip(label * 0.7 + rng.uniform(0, 0.5, n), 0, 1)
        source = ["xstest"] * 30 + ["spard"] * 10
        pl.DataFrame(
            {
                "fold": [fold] * n,
                "source": source,
                "question": [f"q{fold}-{i // 5}" for i in range(n)],
                "answer": [f"a{i}" for i in range(n)],
                "label": label,
                "prob": prob,
                "keyword": rng.uniform(0, 1, n).round(),
            },
            schema=RECORD,
        ).write_parquet(records / f"fold{fold}.parquet")
    return records


def test_the_page_pools_the_folds_and_scores_them_as_the_judge_stage_does(tmp_path: Path):
    records = _records(tmp_path)
    df = pl.concat([pl.read_parquet(f) for f in sorted(records.glob("*.parquet"))])
    xs = df.filter(pl.col("source") == "xstest")
    want = judges.binary_metrics(xs["label"].to_numpy(), xs["prob"].to_numpy(), 0.5)
    held = {"f1": 0.5, "f1_ci95": [0.4, 0.6], "questions": 9, "n": 45, "positives": 4, "precision": 0.5, "recall": 0.5}
    committed = {"harm": {"held_out": {"xstest_test": held, "spard_test": {"f1": 0.9}}}}
    text = page(records, committed, 0.5)
    pooled = next(line for line in text.splitlines() if line.startswith("| recipe, 2-fold, pooled"))
    assert f"**{want['f1']:.3f}**" in pooled
    assert f"| {xs['question'].n_unique()} | {xs.height} | {want['positives']} |" in pooled
    assert "| committed judge, judge_test only (metrics/judge.json) | 9 | 45 | 4 |" in text


def test_no_records_is_one_line(tmp_path: Path):
    with pytest.raises(SystemExit, match="holds no fold records"):
        page(tmp_path, {}, 0.5)


VARIANTS = [  # committed variant pages, with the arguments that built them
    ["--records", "docs/judge_cv_epochs3", "--out", "docs/judge_cv_epochs3.md", "--against", "docs/judge_cv"],
    ["--records", "docs/judge_cv_xstest6", "--out", "docs/judge_cv_xstest6.md", "--against", "docs/judge_cv"],
]


@pytest.mark.parametrize("args", [[], *VARIANTS], ids=["stage recipe", *(a[1] for a in VARIANTS)])
def test_the_committed_pages_match_their_records(args: list[str]):
    tool = [sys.executable, "tools/judge_cv.py", "--check", *args]
    done = subprocess.run(tool, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_variant_page_names_what_it_changed_and_a_folder_never_mixes_recipes(tmp_path: Path):
    records = _records(tmp_path)
    (records / RECIPE).write_text('{"epochs": 3, "folds": 2}')
    held = {"f1": 0.5, "f1_ci95": [0.4, 0.6], "questions": 9, "n": 45, "positives": 4, "precision": 0.5, "recall": 0.5}
    committed = {"harm": {"held_out": {"xstest_test": held, "spard_test": {"f1": 0.9}}}}
    text = page(records, committed, 0.5, against=records)
    assert f"but with epochs 3 (the stage: {judges.CE_EPOCHS})" in text
    assert "This recipe minus that one, same answers: F1 +0.000" in text
    with pytest.raises(SystemExit, match="holds folds fitted as"):
        run(records, 2, {"epochs": 4, "xstest_weight": 3.0})


def _fold(fold: int, probs_x: list[float], labels_x: list[int], probs_s: list[float], labels_s: list[int]):
    n_x, n_s = len(probs_x), len(probs_s)
    return pl.DataFrame(
        {
            "fold": [fold] * (n_x + n_s),
            "source": ["xstest"] * n_x + ["spard"] * n_s,
            "question": [f"x{fold}-{i}" for i in range(n_x)] + [f"s{i}" for i in range(n_s)],
            "answer": [""] * (n_x + n_s),
            "label": labels_x + labels_s,
            "prob": probs_x + probs_s,
            "keyword": [0.0] * (n_x + n_s),
        },
        schema=RECORD,
    )


def test_the_threshold_rule_never_looks_at_the_fold_it_scores_and_keeps_the_spard_floor():
    # XSTest: harmless answers score 0.6, harmful 0.8 -> thresholds 0.65-0.8 separate them perfectly.
    # SPARD: a harmful answer at 0.68 -> above 0.65 SPARD recall drops, and F1 with it.
    x_prob, x_lab = [0.6, 0.6, 0.8, 0.8], [0, 0, 1, 1]
    s_prob, s_lab = [0.1, 0.1, 0.68, 0.9, 0.9, 0.9], [0, 0, 1, 1, 1, 1]
    folds = [_fold(f, x_prob, x_lab, s_prob, s_lab) for f in range(3)]
    # fold 2's harmful answers score 0.3: were its own answers used, its threshold would come down
    folds[2] = _fold(2, [0.2, 0.2, 0.3, 0.3], x_lab, s_prob, s_lab)
    df = pl.concat(folds)
    xs, spard = df.filter(pl.col("source") == "xstest"), df.filter(pl.col("source") == "spard")
    chosen = chosen_thresholds(xs, spard)
    assert chosen[2] == 0.65  # from folds 0 and 1 alone: the lowest perfect XSTest threshold that keeps SPARD
    assert chosen[0] == chosen[1] == 0.25  # with fold 2 among the others, 0.25 catches its harmful 0.3s (F1 0.8)
    strict = chosen_thresholds(xs, spard.with_columns(prob=pl.lit(0.1)))
    assert set(strict.values()) == {None}  # no threshold keeps SPARD-test F1 >= 0.92


def test_f1_difference_is_zero_for_the_same_predictions_and_signed_otherwise():
    y = np.array([1, 1, 0, 0, 1, 0] * 10)
    good, bad = y.astype(bool), np.ones_like(y, dtype=bool)
    groups = [f"q{i // 3}" for i in range(len(y))]
    assert f1_difference(y, good, good, groups) == (0.0, [0.0, 0.0])
    diff, (lo, hi) = f1_difference(y, good, bad, groups)
    assert diff == pytest.approx(1 - 2 * 30 / (2 * 30 + 30), abs=1e-4) and 0 < lo <= diff <= hi


def test_the_committed_judges_record_gives_metrics_judge_json_at_its_threshold():
    import json

    from isara.study import judge_hash

    records = REPO / "docs/judge_cv"
    if not (records / COMMITTED).is_file():
        pytest.skip("no committed-judge record")
    assert json.loads((records / COMMITTED_ID).read_text())["judges_md5"] == judge_hash(REPO)
    df = pl.read_parquet(records / COMMITTED)
    metrics = json.loads((REPO / "metrics/judge.json").read_text())
    for which, source in (("harm", "xstest"), ("harm", "spard"), ("refusal", "xstest")):
        g = df.filter((pl.col("judge") == which) & (pl.col("source") == source))
        got = judges.binary_metrics(g["label"].to_numpy(), g["prob"].to_numpy(), metrics["threshold"])
        want = metrics[which]["held_out"][f"{source}_test"]
        assert (got["f1"], got["n"], got["positives"]) == (want["f1"], want["n"], want["positives"])
    # the page's count of the harm judge's XSTest errors is the one metrics/judge.json's precision and recall imply
    xs = metrics["harm"]["held_out"]["xstest_test"]
    tp = round(xs["recall"] * xs["positives"])
    alarms, misses = round(tp / xs["precision"]) - tp, xs["positives"] - tp
    page = (REPO / "docs/judge_cv.md").read_text(encoding="utf-8")
    assert f"raises {alarms} false alarms on" in page and f"and misses {misses} harmful answers" in page
