"""Step 6: the training set (D0 at weight 1, accepted Dk at weight gamma) and the next pool."""

from __future__ import annotations

import polars as pl

from isara import schema


def seed_pool(seed: pl.DataFrame) -> pl.DataFrame:
    """P0 = D0."""
    return seed.with_columns(pl.lit(0, dtype=pl.Int32).alias("iteration")).select(list(schema.POOL)).sort("sample_id")


def training_rows(seed: pl.DataFrame) -> pl.DataFrame:
    """D0 as training rows: every seed pair at weight 1 (the SFT baseline trains on these alone)."""
    return seed_pool(seed).with_columns(pl.lit(1.0).alias("weight"))


def accepted_pairs(filtered: pl.DataFrame, k: int, run: str) -> pl.DataFrame:
    acc = filtered.filter(pl.col("reject_reason").is_null())
    return pl.DataFrame(
        {
            "sample_id": [schema.text_id(q, a) for q, a in zip(acc["question"], acc["answer"], strict=True)],
            "question": acc["question"],
            "answer": acc["answer"],
            "origin": ["generated"] * acc.height,
            "source": [run] * acc.height,
            "iteration": [k] * acc.height,
        },
        schema=schema.POOL,
    )


def merge(seed: pl.DataFrame, pool: pl.DataFrame, filtered: pl.DataFrame, gamma: float, k: int, run: str):
    """Returns (training set, next pool, data-scaling ratio |P_k| / |D0|)."""
    new = accepted_pairs(filtered, k, run)
    train = pl.concat([training_rows(seed), new.with_columns(pl.lit(float(gamma)).alias("weight"))])
    train = train.select(list(schema.TRAIN)).sort(["iteration", "sample_id"])
    next_pool = pl.concat([pool, new]).unique("sample_id", keep="first").sort("sample_id")
    return train, next_pool, next_pool.height / seed.height
