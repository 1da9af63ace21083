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
from tools.judge_cv import RECORD, folds_of, page


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


def test_the_committed_page_matches_its_records():
    done = subprocess.run([sys.executable, "tools/judge_cv.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
