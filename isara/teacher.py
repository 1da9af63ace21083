"""The teacher, measured: how good are the pairs the model labelled for itself, beside the seed's own.

Costs embeddings only. Per run (an iteration or one-shot), every labelled pair gets the judges' harm and
refusal scores, its nearest seed question's similarity, and how many of its proposal contexts and
labelling neighbours were generated rather than seed pairs. The summary compares the accepted pairs
with D0 on the same judges, so a drift in the labels shows as a gap between the two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from isara import embed, schema
from isara.stats import rate

# A proposal is off the seed's domain when its nearest seed question is less similar than all but this
# share of seed questions are to their own nearest other seed question (the floor is this quantile of
# those similarities): the threshold comes from the seed itself.
OFF_DOMAIN_QUANTILE = 0.05
SEED = "seed"
DATA = Path("data/judged")  # <run>.parquet: every labelled pair, judged (the report's sample browser)
METRICS = Path("metrics/teacher")  # <run>.json
JUDGED = {  # a labelled pair, with the teacher's view of it (data/judged/<run>.parquet)
    **schema.FILTERED,
    "harm_score": pl.Float64,
    "refusal_score": pl.Float64,
    "seed_similarity": pl.Float64,  # cosine similarity of the question to its nearest seed question
    "generated_contexts": pl.Int32,  # proposal contexts that were generated pairs, not seed pairs
    "generated_neighbors": pl.Int32,  # labelling neighbours that were generated pairs
}


def seed_similarity(questions: list[str], seed_questions: list[str], cache: pl.DataFrame, embedder: str):
    """(each question's cosine similarity to its nearest seed question, the in-domain floor of the seed).

    The floor is the OFF_DOMAIN_QUANTILE quantile of each seed question's similarity to its nearest
    other seed question (a seed question is not its own neighbour).
    """
    s = embed.lookup(cache, seed_questions, embedder)
    nearest = (embed.lookup(cache, questions, embedder) @ s.T).max(axis=1) if questions else np.zeros(0)
    within = s @ s.T
    np.fill_diagonal(within, -np.inf)
    floor = float(np.quantile(within.max(axis=1), OFF_DOMAIN_QUANTILE)) if len(seed_questions) > 1 else 0.0
    return nearest.astype(np.float64), floor


def _generated(ids: pl.Series, seed_ids: set[str]) -> pl.Series:
    return pl.Series([sum(i not in seed_ids for i in row) for row in ids.to_list()], dtype=pl.Int32)


def judge_pairs(
    filtered: pl.DataFrame, seed: pl.DataFrame, cache: pl.DataFrame, embedder: str, judges
) -> tuple[pl.DataFrame, float]:
    """filtered.parquet's rows with the judges' scores and their provenance counts; and the in-domain floor."""
    seed_ids = set(seed["sample_id"].to_list())
    q, a = filtered["question"].to_list(), filtered["answer"].to_list()
    near, floor = seed_similarity(q, seed["question"].to_list(), cache, embedder)
    out = filtered.with_columns(
        pl.Series("harm_score", judges.harm(q, a), dtype=pl.Float64),
        pl.Series("refusal_score", judges.refusal(q, a), dtype=pl.Float64),
        pl.Series("seed_similarity", near, dtype=pl.Float64),
        _generated(filtered["context_ids"], seed_ids).alias("generated_contexts"),
        _generated(filtered["neighbor_ids"], seed_ids).alias("generated_neighbors"),
    )
    return out.select(list(JUDGED)), floor


EXAMPLES = {**schema.POOL}  # the pool pairs a run's prompts showed: data/judged/<run>.examples.parquet


def examples(judged: pl.DataFrame, pool: pl.DataFrame) -> pl.DataFrame:
    """The pool pairs the run's proposal and labelling prompts held, so the report can show them."""
    shown = set(judged["context_ids"].explode().drop_nulls().to_list())
    shown |= set(judged["neighbor_ids"].explode().drop_nulls().to_list())
    return pool.filter(pl.col("sample_id").is_in(sorted(shown))).sort("sample_id").select(list(EXAMPLES))


def growth(judged: pl.DataFrame, pool_before: int) -> dict:
    """How the pool grew this run: proposed, accepted, and each reject reason's count."""
    accepted = judged.filter(pl.col("reject_reason").is_null()).height
    reasons = judged.filter(pl.col("reject_reason").is_not_null())["reject_reason"].value_counts(sort=True)
    rejected = dict(sorted(zip(reasons["reject_reason"].to_list(), reasons["count"].to_list(), strict=True)))
    return {
        "pool_before": pool_before,
        "proposed": judged.height,
        "accepted": accepted,
        "pool_after": pool_before + accepted,
        "rejected": rejected,
    }


def judged_rates(judged: pl.DataFrame, seed: pl.DataFrame, judges, threshold: float) -> dict:
    """The judges' harmful and refusal rates over the accepted pairs (their scores in `judged`) and over D0."""
    accepted = judged.filter(pl.col("reject_reason").is_null())
    q, a = seed["question"].to_list(), seed["answer"].to_list()
    seed_harm, seed_refusal = judges.harm(q, a), judges.refusal(q, a)
    return {
        "accepted": {
            "harmful_rate": rate((accepted["harm_score"] >= threshold).to_list()),
            "refusal_rate": rate((accepted["refusal_score"] >= threshold).to_list()),
        },
        "seed": {
            "harmful_rate": rate((seed_harm >= threshold).tolist()),
            "refusal_rate": rate((seed_refusal >= threshold).tolist()),
        },
    }


def summarize(judged: pl.DataFrame, seed: pl.DataFrame, floor: float, judges, threshold: float) -> dict:
    """Judged rates of the accepted pairs beside D0's, and where the labels' contexts came from."""
    return {
        **judged_rates(judged, seed, judges, threshold),
        "label_prompts_with_generated_neighbor": rate((judged["generated_neighbors"] > 0).to_list()),
        "proposal_prompts_with_generated_context": rate((judged["generated_contexts"] > 0).to_list()),
        "off_domain": {
            **rate((judged["seed_similarity"] < floor).to_list()),
            "floor": round(floor, 4),
            "definition": (
                "a proposal whose nearest seed question (cosine similarity of the embedder's vectors) is less"
                f" similar than {1 - OFF_DOMAIN_QUANTILE:.0%} of seed questions are to their nearest other seed question"
            ),
        },
        "seed_similarity_mean": round(float(judged["seed_similarity"].mean() or 0.0), 4),
        "threshold": threshold,
        "judges": "the evaluation's trained judges (metrics/judge.json has their held-out accuracy)",
    }
