"""Step 1: M(k-1) writes new questions, prompted only with random pool Q/A pairs."""

from __future__ import annotations

import numpy as np
import polars as pl

from isara import schema
from isara.config import ProposeParams
from isara.generate import generate, token_counter
from isara.icl import FitLog, fit_prompt, propose_prompt
from isara.resume import part_seed, reused_rows


def draw_contexts(pool: pl.DataFrame, n: int, contexts: int, seed: int) -> list[list[int]]:
    """For each of n prompts, `contexts` distinct pool rows drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    c = min(contexts, pool.height)
    return [sorted(rng.choice(pool.height, size=c, replace=False).tolist()) for _ in range(n)]


def prompts_for(
    tokenizer, pool: pl.DataFrame, cfg: ProposeParams, fmt: str, contexts: int, seed: int, k: int, n: int
) -> tuple[list[str], list[list[str]]]:
    """The n proposal prompts of iteration k, and the pool sample ids each one shows."""
    pool = pool.sort("sample_id")
    questions, answers, ids = pool["question"].to_list(), pool["answer"].to_list(), pool["sample_id"].to_list()
    count = token_counter(tokenizer)
    prompts, context_ids = [], []
    cut = FitLog(f"propose it{k}", cfg.max_prompt_tokens, count)
    for rows in draw_contexts(pool, n, contexts, seed + k):
        pairs = [(questions[r], answers[r]) for r in rows]
        prompt, kept = fit_prompt(pairs, lambda ps: propose_prompt(ps, fmt), count, cfg.max_prompt_tokens)
        cut.add(len(pairs), kept, prompt)
        prompts.append(prompt)
        context_ids.append([ids[r] for r in rows[len(rows) - kept :]])
    cut.report()
    return prompts, context_ids


def propose(
    model,
    tokenizer,
    pool: pl.DataFrame,
    cfg: ProposeParams,
    fmt: str,
    contexts: int,
    seed: int,
    k: int,
    n: int,
    ref: str,
    done: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """n new questions of iteration k; the first rows are taken from `done` (a run this one extends)."""
    prompts, context_ids = prompts_for(tokenizer, pool, cfg, fmt, contexts, seed, k, n)
    m = 0 if done is None else reused_rows(done, n, ref, f"propose it{k}", context_ids=context_ids)
    part = part_seed(seed + k, m)
    raw, texts = generate(model, tokenizer, prompts[m:], cfg, part, fmt, f"propose it{k}", model_key=ref)
    new = pl.DataFrame(
        {
            "sample_id": [schema.text_id(q) for q in texts],
            "iteration": [k] * len(texts),
            "origin": ["generated"] * len(texts),
            "model_ref": [ref] * len(texts),
            "context_ids": context_ids[m:],
            "question": texts,
            "raw": raw,
        },
        schema=schema.PROPOSED,
    )
    return pl.concat([done, new]) if m else new
