"""Step 4: retrieval-augmented in-context labelling: nearest pool pairs, then M(k-1) answers."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl

from isara import embed, index, schema
from isara.config import LabelParams
from isara.generate import generate, token_counter
from isara.icl import FitLog, answer_prompt, fit_prompt
from isara.resume import part_seed, reused_rows


def retrieve(
    questions: list[str], cache: pl.DataFrame, embedder: str, index_file: Path, ids: pl.DataFrame, metric: str, n: int
) -> tuple[list[list[str]], list[list[float]]]:
    """The n nearest pool pairs of each question in the Annoy index: (sample ids, distances), nearest first."""
    vectors = embed.lookup(cache, questions, embedder)
    return index.query(index_file, ids, vectors.shape[1], metric, vectors, n)


def label(
    model,
    tokenizer,
    proposed: pl.DataFrame,
    pool: pl.DataFrame,
    neighbors: list[list[str]],
    dists: list[list[float]],
    cfg: LabelParams,
    fmt: str,
    seed: int,
    k: int,
    ref: str = "",
    done: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Answer each proposed question with its retrieved neighbours as the conversation so far.

    With `done` (the labels of a run this one extends), its rows answer the first questions.
    """
    by_id = {r["sample_id"]: (r["question"], r["answer"]) for r in pool.iter_rows(named=True)}
    count = token_counter(tokenizer)
    prompts, kept_ids, kept_dists = [], [], []
    cut = FitLog(f"label it{k}", cfg.max_prompt_tokens, count)
    for question, ids, ds in zip(proposed["question"], neighbors, dists, strict=True):
        # Nearest example last, right before the question; fit_prompt() drops the farthest first.
        pairs = [by_id[i] for i in reversed(ids)]
        prompt, kept = fit_prompt(
            pairs, partial(answer_prompt, question=question, fmt=fmt), count, cfg.max_prompt_tokens
        )
        cut.add(len(pairs), kept, prompt)
        prompts.append(prompt)
        kept_ids.append(ids[:kept])
        kept_dists.append(ds[:kept])
    cut.report()
    what, questions = f"label it{k}", proposed["question"].to_list()
    m = 0 if done is None else reused_rows(done, len(prompts), ref, what, question=questions, neighbor_ids=kept_ids)
    part = part_seed(seed + k, m)
    _, answers = generate(model, tokenizer, prompts[m:], cfg, part, fmt, what, model_key=ref)
    answers = ([] if done is None else done["answer"].head(m).to_list()) + answers
    return proposed.with_columns(
        pl.Series("neighbor_ids", kept_ids, dtype=pl.List(pl.Utf8)),
        pl.Series("neighbor_dists", kept_dists, dtype=pl.List(pl.Float64)),
        pl.Series("answer", answers, dtype=pl.Utf8),
    ).select(list(schema.LABELED))
