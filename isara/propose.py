"""Step 1: M(k-1) writes new questions, prompted only with random pool Q/A pairs."""

from __future__ import annotations

import numpy as np
import polars as pl

from isara import schema
from isara.config import ProposeParams
from isara.generate import generate, token_counter
from isara.icl import FitLog, fit_prompt, propose_prompt, quotas
from isara.resume import part_seed, reused_rows


def draw_contexts(pool: pl.DataFrame, n: int, contexts: int, seed: int) -> list[list[int]]:
    """For each of n prompts, `contexts` distinct pool rows drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    c = min(contexts, pool.height)
    return [sorted(rng.choice(pool.height, size=c, replace=False).tolist()) for _ in range(n)]


def draw_stratified(pool: pl.DataFrame, n: int, contexts: int, seed: int) -> list[list[int]]:
    """For each of n prompts, pool rows drawn per set (the pool's `iteration`) by icl.quotas, seeded.

    Each set's rows are drawn without replacement, the seed's first and the newest set's last, so the
    newest examples stand nearest the open turn and fit_prompt drops seed examples first. Draws are
    made prompt after prompt from one generator: the first m prompts of a longer run are the same.
    On a pool that is the seed alone (k=1, the one-shot run) the draws are the union's.
    """
    rng = np.random.default_rng(seed)
    iteration = pool["iteration"].to_numpy()
    members = {s: np.flatnonzero(iteration == s) for s in np.unique(iteration).tolist()}
    quota = quotas(list(members), contexts)
    out = []
    for _ in range(n):
        rows: list[int] = []
        for s in sorted(quota):
            pick = rng.choice(len(members[s]), size=min(quota[s], len(members[s])), replace=False)
            rows += sorted(members[s][pick].tolist())
        out.append(rows)
    return out


def prompts_for(
    tokenizer,
    pool: pl.DataFrame,
    cfg: ProposeParams,
    fmt: str,
    contexts: int,
    seed: int,
    k: int,
    n: int,
    allocation: str = "union",
) -> tuple[list[str], list[list[str]]]:
    """The n proposal prompts of iteration k, and the pool sample ids each one shows."""
    pool = pool.sort("sample_id")
    questions, answers, ids = pool["question"].to_list(), pool["answer"].to_list(), pool["sample_id"].to_list()
    count = token_counter(tokenizer)
    prompts, context_ids = [], []
    cut = FitLog(f"propose it{k}", cfg.max_prompt_tokens, count)
    draw = draw_stratified if allocation == "stratified" else draw_contexts
    for rows in draw(pool, n, contexts, seed + k):
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
    allocation: str = "union",
) -> pl.DataFrame:
    """n new questions of iteration k; the first rows are taken from `done` (a run this one extends)."""
    prompts, context_ids = prompts_for(tokenizer, pool, cfg, fmt, contexts, seed, k, n, allocation)
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
