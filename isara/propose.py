"""Step 1: M(k-1) writes new questions, prompted only with random pool Q/A pairs."""

from __future__ import annotations

import numpy as np
import polars as pl

from isara import schema
from isara.config import Params
from isara.errors import IsaraError
from isara.generate import generate, token_counter
from isara.icl import FitLog, fit, propose_prompt


def draw_contexts(pool: pl.DataFrame, n: int, contexts: int, seed: int) -> list[list[int]]:
    """For each of n prompts, `contexts` distinct pool rows drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    c = min(contexts, pool.height)
    return [sorted(rng.choice(pool.height, size=c, replace=False).tolist()) for _ in range(n)]


def part_seed(seed: int, start: int) -> int:
    """Sampling seed of the rows from `start` on: a run that extends another samples apart from it."""
    return seed + 1000 * start


def reused_rows(done: pl.DataFrame, n: int, ref: str, what: str, **expected: list) -> int:
    """How many leading rows `done` (the extended run's output) supplies; checks they are ours to reuse."""
    m = done.height
    if m > n:
        raise IsaraError(f"{what}: the extended run has {m} rows, more than the {n} this run makes")
    if m and (set(done["model_ref"]) != {ref} or any(done[c].to_list() != v[:m] for c, v in expected.items())):
        raise IsaraError(f"{what}: the extended run's rows came from another model, pool or seed; rerun it")
    return m


def prompts_for(tokenizer, pool: pl.DataFrame, params: Params, k: int, n: int) -> tuple[list[str], list[list[str]]]:
    """The n proposal prompts of iteration k, and the pool sample ids each one shows."""
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
    return prompts, context_ids


def propose(
    model, tokenizer, pool: pl.DataFrame, params: Params, k: int, n: int, ref: str, done: pl.DataFrame | None = None
) -> pl.DataFrame:
    """n new questions; the first rows are taken from `done` (a run this one extends) when given."""
    cfg, fmt = params.propose, params.model.chat_format
    prompts, context_ids = prompts_for(tokenizer, pool, params, k, n)
    m = 0 if done is None else reused_rows(done, n, ref, f"propose it{k}", context_ids=context_ids)
    seed = part_seed(params.seed + k, m)
    raw, texts = generate(model, tokenizer, prompts[m:], cfg, seed, fmt, f"propose it{k}", model_key=ref)
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
