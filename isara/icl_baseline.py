"""The paper's ICL baselines: M0 answers with D0 examples in the prompt, drawn at random or nearest."""

from __future__ import annotations

import numpy as np
import polars as pl

from isara.embed import encode

Pair = tuple[str, str]


def examples_for(
    prompts: list[str], seed_pairs: pl.DataFrame, how: str, contexts: int, seed: int, embedder: str
) -> list[list[Pair]]:
    """`contexts` seed pairs per prompt, farthest first (the nearest sits next to the question)."""
    seed_pairs = seed_pairs.sort("sample_id")
    pairs = list(zip(seed_pairs["question"].to_list(), seed_pairs["answer"].to_list(), strict=True))
    c = min(contexts, len(pairs))
    if how == "random":
        rng = np.random.default_rng(seed)
        return [[pairs[i] for i in rng.choice(len(pairs), size=c, replace=False)] for _ in prompts]
    # Exact cosine kNN: D0 has < 100 rows, so an index would not pay for itself here.
    sims = encode(prompts, embedder) @ encode(seed_pairs["question"].to_list(), embedder).T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :c]
    return [[pairs[i] for i in reversed(row)] for row in nearest]
