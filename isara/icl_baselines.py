"""The paper's ICL baselines: D0 examples in the prompt at inference, drawn at random or nearest."""

from __future__ import annotations

import numpy as np
import polars as pl

from isara.config import Params
from isara.embed import encode


def examples_for(prompts: list[str], seed: pl.DataFrame, how: str, params: Params) -> list[list[tuple[str, str]]]:
    """`contexts` seed pairs per prompt, farthest first (the nearest sits next to the question)."""
    seed = seed.sort("sample_id")
    pairs = list(zip(seed["question"].to_list(), seed["answer"].to_list(), strict=True))
    c = min(params.contexts, len(pairs))
    if how == "random":
        rng = np.random.default_rng(params.seed)
        return [[pairs[i] for i in rng.choice(len(pairs), size=c, replace=False)] for _ in prompts]
    # Exact cosine kNN: D0 has < 100 rows, so an index would not pay for itself here.
    sims = encode(prompts, params.model.embedder) @ encode(seed["question"].to_list(), params.model.embedder).T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :c]
    return [[pairs[i] for i in reversed(row)] for row in nearest]
