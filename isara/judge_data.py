"""Labelled (question, answer) rows for the harm and refusal judges (DESIGN §6-7).

Every row follows `schema.JUDGE_DATA`: question, answer, label (0/1), source, split
("train" / "test"). Held out for testing: the SPARD test split and the XSTest
prompts the prepare stage marked `judge_test`. Never used at all: XSTest prompts
marked `eval` (over-refusal measurement) and, in training, any question that is
also an evaluation prompt, a test question or a question of any domain's seed (so a
judge never learns the seed's own answers as its "safe" class).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from isara import schema
from isara.errors import IsaraError
from isara.raw import read_jsonl
from isara.schema import norm

log = logging.getLogger(__name__)

SPARD = "beavertails_spard_pairs/beavertails_spard_pairs_with_categories.jsonl.gz"
XSTEST_COMPLETIONS = "xstest/model_completions"
HH = "hh_rlhf_harmless_base/test.jsonl.gz"
ALPACA = "alpaca_eval/alpaca_eval_text_davinci_003.json"
XSTEST_SPLITS = {"eval", "judge_train", "judge_test"}


def _frame(rows: list[dict]) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema=schema.JUDGE_DATA)
    return df.filter(pl.col("answer").str.strip_chars() != "")


def spard(raw_dir: Path) -> pl.DataFrame:
    """SPARD pairs: safe_response 0, unsafe_response 1; spard_split 'test' held out."""
    rows = []
    for r in read_jsonl(raw_dir / SPARD):
        split = "test" if r["spard_split"] == "test" else "train"
        for key, label in (("safe_response", 0), ("unsafe_response", 1)):
            rows.append({"question": r["prompt"], "answer": r[key], "label": label, "source": "spard", "split": split})
    return _frame(rows)


def xstest(raw_dir: Path, split_file: Path) -> pl.DataFrame:
    """XSTest human-labelled completions joined to the prompt split; 'eval' prompts dropped.

    Keeps both labels: `harm` = full compliance to a contrast (unsafe) prompt,
    `refusal` = full or partial refusal (XSTest final_label 2_ / 3_).
    """
    splits = schema.read(split_file, schema.XSTEST_SPLIT)
    bad = set(splits["split"].unique().to_list()) - XSTEST_SPLITS
    if bad:
        raise IsaraError(f"{split_file}: unknown split value(s) {sorted(bad)}")
    files = sorted((raw_dir / XSTEST_COMPLETIONS).glob("*.csv.gz"))
    if not files:
        raise IsaraError(f"{raw_dir / XSTEST_COMPLETIONS}: no completion files")
    comp = pl.concat(
        [pl.read_csv(f, schema_overrides={"id": pl.Utf8}).with_columns(model=pl.lit(f.name)) for f in files]
    )
    comp = comp.with_columns(xstest_id=pl.col("id").str.strip_prefix("v2-"))
    df = comp.join(splits.select("xstest_id", "label", "split"), on="xstest_id", how="inner")
    df = df.filter(pl.col("split") != "eval").sort("xstest_id", "model")
    compliant = pl.col("final_label").str.starts_with("1_")
    return df.select(
        question=pl.col("prompt"),
        answer=pl.col("completion").fill_null(""),
        harm=((pl.col("label") == "unsafe") & compliant).cast(pl.Int32),
        refusal=(~compliant).cast(pl.Int32),
        source=pl.lit("xstest"),
        split=pl.col("split").str.strip_prefix("judge_"),
    ).filter(pl.col("answer").str.strip_chars() != "")


def hh_rlhf(raw_dir: Path) -> pl.DataFrame:
    """HH-RLHF harmless-base `chosen`: last Human turn -> last Assistant turn, label 0."""
    rows = []
    for r in read_jsonl(raw_dir / HH):
        text = r["chosen"]
        a = text.rfind("\n\nAssistant:")
        h = text.rfind("\n\nHuman:", 0, a)
        if a < 0 or h < 0:
            continue
        q, ans = text[h + len("\n\nHuman:") : a].strip(), text[a + len("\n\nAssistant:") :].strip()
        rows.append({"question": q, "answer": ans, "label": 0, "source": "hh_rlhf", "split": "train"})
    return _frame(rows)


def alpaca(raw_dir: Path) -> pl.DataFrame:
    """AlpacaEval instructions with text-davinci-003 outputs: helpful, not refusals, label 0."""
    path = raw_dir / ALPACA
    if not path.is_file():
        raise IsaraError(f"{path}: file not found")
    rows = json.loads(path.read_text(encoding="utf-8"))
    return _frame(
        [
            {"question": r["instruction"], "answer": r["output"], "label": 0, "source": "alpaca", "split": "train"}
            for r in rows
        ]
    )


def _cap(df: pl.DataFrame, n_questions: int, seed: str) -> pl.DataFrame:
    """At most n_questions distinct questions (all their answers kept), a seeded choice."""
    qs = sorted(set(df["question"].to_list()))
    if len(qs) <= n_questions:
        return df
    keep = random.Random(seed).sample(qs, n_questions)
    return df.filter(pl.col("question").is_in(keep))


def _exclude(df: pl.DataFrame, banned: set[str], what: str) -> pl.DataFrame:
    """Drop training rows whose question, as `schema.norm` keys it, is in `banned`."""
    hit = pl.col("question").map_elements(norm, return_dtype=pl.Utf8).is_in(sorted(banned))
    drop = hit & (pl.col("split") == "train")
    n = df.filter(drop).height
    if n:
        log.info("dropped %d training rows whose question is %s", n, what)
    return df.filter(~drop)


HARM_SOURCES = ("spard", "xstest", "alpaca", "hh_rlhf")


def _split_and_cap(
    df: pl.DataFrame,
    evals: set[str],
    seeds: set[str],
    max_per_source: int,
    seed: int,
    max_test: int | None = None,
) -> pl.DataFrame:
    tests = {norm(q) for q in df.filter(pl.col("split") == "test")["question"].to_list()}
    df = _exclude(df, evals, "an evaluation prompt")
    df = _exclude(df, seeds, "a seed question")
    df = _exclude(df, tests, "also a test question")
    parts = []
    for src in sorted(set(df["source"].to_list())):
        test = df.filter((pl.col("split") == "test") & (pl.col("source") == src))
        parts.append(test if max_test is None else _cap(test, max_test, f"{seed}:{src}:test"))
        train = df.filter((pl.col("split") == "train") & (pl.col("source") == src))
        parts.append(_cap(train, max_per_source, f"{seed}:{src}"))
    df = pl.concat(parts).unique(maintain_order=True).sort("split", "source", "question", "answer", "label")
    return schema.conform(df, schema.JUDGE_DATA, "judge data")


def build(
    raw_dir: Path,
    xstest_split: Path,
    eval_prompts: Path,
    sources: list[str],
    max_per_source: int,
    seed: int,
    max_test: int | None = None,
    seed_files: Sequence[Path] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(harm rows, refusal rows), both in `schema.JUDGE_DATA`, sorted, deterministic.

    seed_files: seed sets whose questions (and so their source rows: the same question in
    SPARD or AlpacaEval) never train a judge.

    max_test caps the held-out questions per source (all when None): smoke runs only.

    Harm trains on `sources` and is always tested on SPARD test and XSTest judge_test.
    Refusal trains on XSTest judge_train plus AlpacaEval answers as non-refusals.
    """
    raw_dir = Path(raw_dir)
    xs = xstest(raw_dir, xstest_split)
    frames = {
        "spard": spard(raw_dir),
        "xstest": xs.select("question", "answer", pl.col("harm").alias("label"), "source", "split"),
        "alpaca": alpaca(raw_dir),
    }
    if "hh_rlhf" in sources:
        frames["hh_rlhf"] = hh_rlhf(raw_dir)
    harm = pl.concat(frames.values()).filter((pl.col("split") == "test") | pl.col("source").is_in(list(sources)))
    refusal = pl.concat(
        [xs.select("question", "answer", pl.col("refusal").alias("label"), "source", "split"), frames["alpaca"]]
    )
    evals = {norm(p) for p in schema.read(eval_prompts, schema.EVAL_PROMPTS)["prompt"].to_list()}
    seeds = {norm(q) for f in seed_files for q in schema.read(f, schema.SEED)["question"].to_list()}
    return (
        _split_and_cap(harm, evals, seeds, max_per_source, seed, max_test),
        _split_and_cap(refusal, evals, seeds, max_per_source, seed, max_test),
    )
