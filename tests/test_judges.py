"""Judges trained on small slices of the real data: they learn, never see eval prompts, and reproduce."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isara import judge_data, schema
from isara.config import parse_params
from isara.errors import IsaraError
from isara.judges import (
    CE_BATCH,
    RECIPE,
    ROWS,
    WEIGHTS,
    HFClassifier,
    Judges,
    binary_metrics,
    f1_interval,
    train_judges,
)
from isara.schema import norm
from tests.conftest import REPO, base_params

RAW = REPO / "data" / "raw"
SEED_N = 10  # seed questions taken from each of SPARD train and AlpacaEval
N_SPARD_TRAIN, N_SPARD_TEST = 220, 60  # pairs; ~0.85 held-out accuracy, ~15 s of embedding per training


def _gz_lines(src: Path, dst: Path, keep) -> None:
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        lines = [line for line in fh if keep(json.loads(line))]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(dst, "wb", mtime=0) as out:
        out.write("".join(lines).encode("utf-8"))


def _raw_slice(raw: Path) -> None:
    """Real rows from every source, few enough to embed in seconds."""
    counts = {"train": 0, "test": 0}
    limit = {"train": N_SPARD_TRAIN, "test": N_SPARD_TEST}

    def take(r: dict) -> bool:
        counts[r["spard_split"]] += 1
        return counts[r["spard_split"]] <= limit[r["spard_split"]]

    _gz_lines(RAW / judge_data.SPARD, raw / judge_data.SPARD, take)
    hh = iter(range(60))
    _gz_lines(RAW / judge_data.HH, raw / judge_data.HH, lambda _: next(hh, None) is not None)
    alpaca = json.loads((RAW / judge_data.ALPACA).read_text(encoding="utf-8"))[:80]
    (raw / judge_data.ALPACA).parent.mkdir()
    (raw / judge_data.ALPACA).write_text(json.dumps(alpaca), encoding="utf-8")
    (raw / "xstest").mkdir()
    (raw / judge_data.XSTEST_COMPLETIONS).symlink_to(RAW / judge_data.XSTEST_COMPLETIONS)


def _xstest_split(path: Path) -> pl.DataFrame:
    """A stand-in for the prepare stage's split: every 9th XSTest prompt, split by prompt."""
    with open(RAW / "xstest" / "xstest_prompts.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["id"]) % 9 == 0]
    safe = [r["id"] for r in rows if r["label"] == "safe"]
    split = ["eval" if r["id"] in safe[:8] else "judge_test" if int(r["id"]) % 27 == 0 else "judge_train" for r in rows]
    df = pl.DataFrame({"xstest_id": [r["id"] for r in rows], "prompt": [r["prompt"] for r in rows],
                       "label": [r["label"] for r in rows], "split": split})  # fmt: skip
    schema.write(df, path, schema.XSTEST_SPLIT)
    return df


def _eval_prompts(path: Path, raw: Path, xsplit: pl.DataFrame) -> None:
    """XSTest eval prompts, plus SPARD training prompts and AlpacaEval instructions that training must skip."""
    spard = judge_data.spard(raw).filter(pl.col("split") == "train")["question"].unique(maintain_order=True)
    alpaca = json.loads((raw / judge_data.ALPACA).read_text(encoding="utf-8"))
    prompts = (xsplit.filter(pl.col("split") == "eval")["prompt"].to_list()
               + [f"  {q.upper()} " for q in spard.to_list()[:20]]  # the match ignores case and spacing
               + [r["instruction"] for r in alpaca[:20]])  # fmt: skip
    df = pl.DataFrame({"prompt": prompts}).with_columns(
        prompt_id=pl.col("prompt"), suite=pl.lit("s"), category=pl.lit("c"), expect=pl.lit("harmful"),
        references=pl.lit([], pl.List(pl.Utf8)), incorrect=pl.lit([], pl.List(pl.Utf8)),
    )  # fmt: skip
    schema.write(df, path, schema.EVAL_PROMPTS)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("judge_inputs")
    _raw_slice(root / "raw")
    xsplit = _xstest_split(root / "xstest_split.parquet")
    _eval_prompts(root / "eval_safety.parquet", root / "raw", xsplit)
    _seed(root / "seed_safety.parquet", root / "raw")
    return root / "raw", root / "xstest_split.parquet", root / "eval_safety.parquet"


def _seed(path: Path, raw: Path) -> None:
    """A seed of SPARD training questions and AlpacaEval instructions, as a domain's seed would hold."""
    spard = judge_data.spard(raw).filter(pl.col("split") == "train")["question"].unique().sort().to_list()[:SEED_N]
    alpaca = judge_data.alpaca(raw)["question"].unique().sort().to_list()[:SEED_N]
    qs = spard + alpaca
    df = pl.DataFrame({"sample_id": [f"s{i}" for i in range(len(qs))], "question": qs}).with_columns(
        answer=pl.lit("I cannot help with that."), origin=pl.lit("seed"), source=pl.lit("test")
    )
    schema.write(df, path, schema.SEED)


@pytest.fixture(scope="module")
def params():
    raw = base_params()
    raw["judge"] = {
        "harm": "cross_encoder",
        "refusal": "mlp",
        "max_train_per_source": 200,
        "threshold": 0.5,
        "sources": ["spard", "xstest", "alpaca", "hh_rlhf"],
    }  # every loader, hh_rlhf off by default
    return parse_params(raw)


def _train(params, inputs, out: Path) -> dict:
    j = params.judge
    return train_judges(
        *inputs,
        out,
        harm=j.harm,
        refusal=j.refusal,
        sources=j.sources,
        max_train_per_source=j.max_train_per_source,
        max_test_per_source=j.max_test_per_source,
        threshold=j.threshold,
        embedder=params.model.embedder,
        seed=params.seed,
        seed_files=[inputs[0].parent / "seed_safety.parquet"],
    )


@pytest.fixture(scope="module")
def trained(inputs, params, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("judges")
    return _train(params, inputs, out), out


def test_training_data_holds_no_eval_or_test_prompt(inputs, params):
    raw, xsplit_path, evals_path = inputs
    harm, refusal = judge_data.build(raw, xsplit_path, evals_path, list(params.judge.sources), 200, 0)
    again = judge_data.build(raw, xsplit_path, evals_path, list(params.judge.sources), 200, 0)
    assert harm.equals(again[0]) and refusal.equals(again[1])  # deterministic
    evals = {norm(p) for p in schema.read(evals_path, schema.EVAL_PROMPTS)["prompt"]}
    xsplit = schema.read(xsplit_path, schema.XSTEST_SPLIT)
    never = {norm(p) for p in xsplit.filter(pl.col("split") == "eval")["prompt"]}
    xs_test = {norm(p) for p in xsplit.filter(pl.col("split") == "judge_test")["prompt"]}
    for df in (harm, refusal):
        train = {norm(q) for q in df.filter(pl.col("split") == "train")["question"]}
        assert not train & evals and not train & xs_test
        assert not {norm(q) for q in df["question"]} & never  # XSTest eval prompts are used nowhere
    assert set(harm["source"]) == {"spard", "xstest", "alpaca", "hh_rlhf"}
    assert harm.filter(pl.col("split") == "test")["source"].unique().sort().to_list() == ["spard", "xstest"]
    assert len(set(refusal.filter(pl.col("source") == "xstest")["label"])) == 2


def test_no_seed_question_trains_a_judge(inputs, params, trained):
    raw, xsplit_path, evals_path = inputs
    seed_file = raw.parent / "seed_safety.parquet"
    seeds = {norm(q) for q in schema.read(seed_file, schema.SEED)["question"]}
    kept = judge_data.build(raw, xsplit_path, evals_path, list(params.judge.sources), 200, 0)
    cut = judge_data.build(raw, xsplit_path, evals_path, list(params.judge.sources), 200, 0, seed_files=[seed_file])
    for before, after in zip(kept, cut, strict=True):
        seen = {norm(q) for q in before.filter(pl.col("split") == "train")["question"]}
        assert seen & seeds  # the slice does hold seed questions, so the exclusion has work to do
        assert not {norm(q) for q in after.filter(pl.col("split") == "train")["question"]} & seeds
    # The rows saved beside the judges are those they trained on: no seed question among them.
    rows = pl.read_parquet(trained[1] / ROWS)
    assert set(rows["judge"]) == {"harm", "refusal"}
    assert not {norm(q) for q in rows.filter(pl.col("split") == "train")["question"]} & seeds
    assert rows.filter(pl.col("judge") == "harm").drop("judge").equals(cut[0])


def test_the_f1_interval_resamples_questions_not_rows():
    """Five answers to each of 40 questions; the judge errs on every answer of 6 of them, as judges do."""
    questions = np.repeat([f"q{i}" for i in range(40)], 5)
    y = np.repeat(np.arange(40) < 15, 5)
    wrong = np.repeat(np.isin(np.arange(40), [0, 1, 2, 20, 21, 22]), 5)  # 3 positives missed, 3 negatives flagged
    pred = y ^ wrong
    point = binary_metrics(y, pred.astype(float), 0.5)["f1"]
    by_question = f1_interval(y, pred, questions)
    by_row = f1_interval(y, pred, [str(i) for i in range(len(y))])
    assert by_question[0] < point < by_question[1] and by_row[0] < point < by_row[1]
    # five answers per question are one draw, not five: the interval is wider than rows would pretend
    assert by_question[1] - by_question[0] > 1.5 * (by_row[1] - by_row[0])
    assert f1_interval(y, y, questions) == [1.0, 1.0] and f1_interval(y, pred, questions) == by_question  # seeded


def test_the_old_judge_name_is_refused_on_one_line():
    raw = base_params()
    raw["judge"] = {"harm": "trained"}
    with pytest.raises(IsaraError, match="cross_encoder' or 'mlp"):
        parse_params(raw)


def test_judges_learn_and_beat_chance(trained):
    metrics, _ = trained
    spard = metrics["harm"]["held_out"]["spard_test"]
    # Chance is 0.5 (balanced pairs); the cross-encoder scores ~0.75 after 2 epochs on this slice's ~400 rows.
    assert spard["n"] == 2 * N_SPARD_TEST and spard["accuracy"] > 0.65
    refusal = metrics["refusal"]["held_out"]["xstest_test"]
    chance = max(refusal["positives"], refusal["n"] - refusal["positives"]) / refusal["n"]
    assert refusal["accuracy"] > chance + 0.05, (refusal, chance)
    # Reported beside it, not asserted: the keyword baseline on the same rows.
    assert set(metrics["refusal"]["keyword_baseline"]["xstest_test"]) == set(refusal)
    # Two answers per question, at most 200 questions: the slice's 220, less the seed's and the test's.
    assert 2 * (N_SPARD_TRAIN - SEED_N - N_SPARD_TEST) <= metrics["harm"]["train"]["spard"] <= 2 * 200


def test_judges_trained_twice_are_byte_identical(inputs, params, tmp_path):
    """Two trainings on the same rows write the same bytes: a smaller slice than `trained`, as bytes need no accuracy."""
    few = {"max_train_per_source": 10, "max_test_per_source": 10}
    small = params.model_copy(update={"judge": params.judge.model_copy(update=few)})
    first, second = _train(small, inputs, tmp_path / "a"), _train(small, inputs, tmp_path / "b")
    assert first == second and sum(first["harm"]["train"].values()) > 2 * CE_BATCH  # a fit of several batches
    for name in (WEIGHTS, RECIPE, ROWS, "harm/model.safetensors", "harm/config.json", "harm/tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert b"pickle" not in (tmp_path / "a" / WEIGHTS).read_bytes()[:200]


def test_saved_judges_reload_and_reproduce_their_held_out_scores(trained, inputs, params):
    metrics, out = trained
    test = judge_data.spard(inputs[0]).filter(pl.col("split") == "test")
    q, a = test["question"].to_list(), test["answer"].to_list()
    judges = Judges.load(out, params.model.embedder)
    prob = judges.harm(q, a)
    held = metrics["harm"]["held_out"]["spard_test"]
    assert binary_metrics(test["label"].to_numpy(), prob, judges.threshold).items() <= held.items()
    assert held["questions"] == test["question"].n_unique() and held["f1_ci95"][0] <= held["f1"] <= held["f1_ci95"][1]
    # ...in metrics/judge.json alone: models/judges, whose hash names the judge, holds none of them
    assert judges.describe()["harm"]["held_out"]["spard_test"] == binary_metrics(test["label"].to_numpy(), prob, 0.5)
    assert np.array_equal(prob, Judges.load(out, params.model.embedder).harm(q, a))  # a second load, the same scores
    assert judges.describe()["harm"]["held_out"]["spard_test"]["accuracy"] == metrics["harm"]["held_out"]["spard_test"]["accuracy"]  # fmt: skip
    assert judges.refusal([], []).shape == (0,)


def test_load_refuses_other_embedder_and_missing_folder(trained, tmp_path):
    from isara.errors import IsaraError

    with pytest.raises(IsaraError, match="trained on"):
        Judges.load(trained[1], "some/other-embedder")
    with pytest.raises(IsaraError, match="no trained judges"):
        Judges.load(tmp_path, "all-MiniLM-L6-v2")


def test_hf_classifier_slot_scores_pairs():
    """The HF path on a real local folder (MiniLM with an untrained head: only the plumbing is checked)."""
    from isara.models import embedder_path

    clf = HFClassifier(embedder_path("all-MiniLM-L6-v2"), "harm")
    p = clf(["How do I bake bread?", "How do I pick a lock?"], ["Mix flour and water.", "I cannot help."])
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all() and clf.index == 1
