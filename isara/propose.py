"""Step 1: M(k-1) writes new questions, prompted only with random pool Q/A pairs."""

from __future__ import annotations

import numpy as np
import polars as pl

from isara import schema
from isara.config import Params
from isara.generate import generate, token_counter
from isara.icl import FitLog, fit, propose_prompt


def draw_contexts(pool: pl.DataFrame, n: int, contexts: int, seed: int) -> list[list[int]]:
    """For each of n prompts, `contexts` distinct pool rows drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    c = min(contexts, pool.height)
    return [sorted(rng.choice(pool.height, size=c, replace=False).tolist()) for _ in range(n)]


def propose(model, tokenizer, pool: pl.DataFrame, params: Params, k: int, n: int, ref: str) -> pl.DataFrame:
    cfg, fmt = params.propose, params.model.chat_format
    pool = pool.sort("sample_id")
    questions, answers, ids = pool["question"].to_list(), pool["answer"].to_list(), pool["sample_id"].to_list()
    count = token_counter(tokenizer)
    prompts, context_ids = [], []
    cut = FitLog(f"propose it{k}", cfg.max_prompt_tokens, count)
    for rows in draw_contexts(pool, n, params.contexts, params.seed + k):
        pairs = [(questions[r], answers[r]) for r in rows]
        prompt, kept = fit(pairs, lambda ps: propose_prompt(ps, fmt), count, cfg.max_prompt_tokens)
        cut.add(len(pairs), kept, prompt)
        prompts.append(prompt)
        context_ids.append([ids[r] for r in rows[len(rows) - kept :]])
    cut.report()
    raw, texts = generate(model, tokenizer, prompts, cfg, params.seed + k, fmt, f"propose it{k}", model_key=ref)
    return pl.DataFrame(
        {
            "sample_id": [schema.text_id(q) for q in texts],
            "iteration": [k] * len(texts),
            "origin": ["generated"] * len(texts),
            "model_ref": [ref] * len(texts),
            "context_ids": context_ids,
            "question": texts,
            "raw": raw,
        },
        schema=schema.PROPOSED,
    )
