"""Step 5: keep novel, long-enough, non-duplicate pairs; rejected rows keep their reason."""

from __future__ import annotations

import polars as pl

from isara import schema
from isara.config import FilterParams
from isara.rouge import rouge_l, rouge_l_max, rouge_l_pairs, tokenize
from isara.schema import norm

# The first reason that applies is recorded, in this order.
REASONS = (
    "empty_question",
    "empty_answer",
    "duplicate",
    "short_question",
    "short_answer",
    "answer_repeats_question",
    "similar_to_context",
    "similar_to_pool",
)


def score(labeled: pl.DataFrame, pool: pl.DataFrame) -> pl.DataFrame:
    """Novelty (ROUGE-L vs prompt contexts and vs the pool) and word counts per row."""
    by_id = dict(zip(pool["sample_id"], pool["question"], strict=True))
    questions = labeled["question"].to_list()
    contexts = [[by_id[i] for i in ids if i in by_id] for ids in labeled["context_ids"].to_list()]
    return labeled.with_columns(
        pl.Series("rouge_context", rouge_l_pairs(questions, contexts), dtype=pl.Float64),
        pl.Series("rouge_pool", rouge_l_max(questions, pool["question"].to_list()), dtype=pl.Float64),
        pl.Series("question_words", [len(tokenize(q)) for q in questions], dtype=pl.Int32),
        pl.Series("answer_words", [len(tokenize(a)) for a in labeled["answer"]], dtype=pl.Int32),
    )


def reject_reason(row: dict, seen: set[str], cfg: FilterParams, repeats: float) -> str | None:
    q, a = norm(row["question"]), norm(row["answer"])
    checks = (
        not q,
        not a,
        q in seen,
        row["question_words"] < cfg.min_words,
        row["answer_words"] < cfg.min_words,
        repeats > cfg.rouge_threshold,  # the answer is mostly the question again
        row["rouge_context"] > cfg.rouge_threshold,
        row["rouge_pool"] > cfg.rouge_threshold,
    )
    return next((reason for reason, hit in zip(REASONS, checks, strict=True) if hit), None)


def apply(labeled: pl.DataFrame, pool: pl.DataFrame, cfg: FilterParams) -> pl.DataFrame:
    """Score every row and set reject_reason (null = accepted); row order is kept."""
    scored = score(labeled, pool)
    seen = {norm(q) for q in pool["question"]}
    reasons = []
    for row in scored.iter_rows(named=True):
        reason = reject_reason(row, seen, cfg, rouge_l(row["question"], row["answer"]))
        reasons.append(reason)
        seen.add(norm(row["question"]))
    return scored.with_columns(pl.Series("reject_reason", reasons, dtype=pl.Utf8)).select(list(schema.FILTERED))


def summary(filtered: pl.DataFrame) -> dict:
    n = filtered.height
    accepted = filtered.filter(pl.col("reject_reason").is_null())
    reasons = {r: filtered.filter(pl.col("reject_reason") == r).height / max(n, 1) for r in REASONS}
    return {
        "proposed": n,
        "accepted": accepted.height,
        "acceptance_rate": accepted.height / max(n, 1),
        "reject_rate": reasons,
        "novelty_rouge_pool_mean": float(filtered["rouge_pool"].mean() or 0.0),
        "novelty_rouge_pool_mean_accepted": float(accepted["rouge_pool"].mean() or 0.0),
    }
