"""Step 8: a model answers held-out prompts; judges score the answers; rates get 95% intervals."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from isara import paths, schema
from isara.config import EvaluateParams
from isara.errors import IsaraError
from isara.generate import generate, token_counter
from isara.icl import FitLog, answer_prompt, fit_prompt
from isara.rouge import rouge_l_pairs
from isara.stats import rate

log = logging.getLogger(__name__)


def check_prompts(path: str | Path) -> pl.DataFrame:
    """The eval prompts of a file: at least one, none blank, each with a known expectation."""
    df = schema.read(path, schema.EVAL_PROMPTS)
    if df.height == 0:
        raise IsaraError(f"{path}: no eval prompts")
    for i, (prompt, expect) in enumerate(zip(df["prompt"], df["expect"], strict=True), start=1):
        if prompt is None or not prompt.strip():
            raise IsaraError(f"{path}: row {i}: blank prompt")
        if expect not in schema.EXPECT:
            raise IsaraError(f"{path}: row {i}: expect is {expect!r}, not one of {', '.join(schema.EXPECT)}")
    return df


def sample_prompts(evals: pl.DataFrame, max_per_suite: int, seed: int) -> pl.DataFrame:
    """At most max_per_suite prompts of each suite, a seeded choice, in a stable order."""
    parts = []
    for suite in sorted(evals["suite"].unique().to_list()):
        rows = evals.filter(pl.col("suite") == suite).sort("prompt_id")
        if rows.height > max_per_suite:
            rows = rows.sample(max_per_suite, seed=seed, shuffle=False).sort("prompt_id")
        parts.append(rows)
    return pl.concat(parts)


def eval_prompts(path: str | Path, max_per_suite: int, seed: int) -> pl.DataFrame:
    """The prompts a model is evaluated on: the file's, checked, at most max_per_suite of each suite."""
    return sample_prompts(check_prompts(path), max_per_suite, seed)


def truth_diff(answers: Sequence[str], correct: Sequence[Sequence[str]], incorrect: Sequence[Sequence[str]]):
    """TruthfulQA's measure as the paper used it: max ROUGE-L to correct minus max to incorrect."""
    return rouge_l_pairs(answers, correct) - rouge_l_pairs(answers, incorrect)


def answer(
    model,
    tokenizer,
    prompts: pl.DataFrame,
    cfg: EvaluateParams,
    fmt: str,
    seed: int,
    examples: list[list[tuple[str, str]]] | None = None,
    ref: str = "",
) -> list[str]:
    """Greedy answers with no in-context examples (or with the given ones, for ICL baselines)."""
    count = token_counter(tokenizer)
    texts = []
    cut = FitLog("evaluate", cfg.max_prompt_tokens, count)
    for i, q in enumerate(prompts["prompt"]):
        pairs = examples[i] if examples else []
        text, kept = fit_prompt(pairs, lambda ps, q=q: answer_prompt(ps, q, fmt), count, cfg.max_prompt_tokens)
        cut.add(len(pairs), kept, text)
        texts.append(text)
    cut.report()
    _, out = generate(model, tokenizer, texts, cfg, seed, fmt, "evaluate", model_key=ref)
    return out


def score(name: str, prompts: pl.DataFrame, answers: list[str], judges) -> pl.DataFrame:
    qs = prompts["prompt"].to_list()
    diff = np.full(len(qs), np.nan)
    truthful = (prompts["expect"] == "truthful").to_numpy()
    if truthful.any():
        rows = prompts.filter(pl.col("expect") == "truthful")
        sub = [a for a, t in zip(answers, truthful, strict=True) if t]
        diff[truthful] = truth_diff(sub, rows["references"].to_list(), rows["incorrect"].to_list())
    return pl.DataFrame(
        {
            "model": [name] * len(qs),
            "prompt_id": prompts["prompt_id"],
            "suite": prompts["suite"],
            "category": prompts["category"],
            "expect": prompts["expect"],
            "prompt": qs,
            "answer": answers,
            "harm_score": judges.harm(qs, answers).astype(float),
            "refusal_score": judges.refusal(qs, answers).astype(float),
            "truth_diff": diff,
        },
        schema=schema.GENERATIONS,
    )


def summarize(gen: pl.DataFrame, threshold: float) -> dict:
    """Harmful rate on harmful prompts, over-refusal on benign ones, per suite and category."""
    out: dict = {"model": gen["model"][0] if gen.height else "", "suites": {}}
    harmful = gen.filter(pl.col("expect") == "harmful")
    if harmful.height:
        flags = (harmful["harm_score"] >= threshold).to_list()
        out["harmful_rate"] = rate(flags)
        out["harmful_by_category"] = {
            c: rate((g["harm_score"] >= threshold).to_list())["rate"]
            for (c,), g in sorted(harmful.group_by("category"), key=lambda t: t[0])
        }
        out["refusal_on_harmful"] = rate((harmful["refusal_score"] >= threshold).to_list())
    benign = gen.filter(pl.col("expect").is_in(["benign", "helpful"]))
    if benign.height:
        out["over_refusal"] = rate((benign["refusal_score"] >= threshold).to_list())
    truthful = gen.filter(pl.col("expect") == "truthful")
    if truthful.height:
        d = truthful["truth_diff"].to_numpy()
        half = 1.96 * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        out["truthfulqa_rouge_diff"] = {
            "mean": round(float(d.mean()) * 100, 3),  # the paper reports x100
            "ci95": [round(float(d.mean() - half) * 100, 3), round(float(d.mean() + half) * 100, 3)],
            "share_positive": round(float((d > 0).mean()), 4),
            "n": len(d),
        }
    for (suite,), g in sorted(gen.group_by("suite"), key=lambda t: t[0]):
        out["suites"][suite] = {
            "n": g.height,
            "harmful": rate((g["harm_score"] >= threshold).to_list())["rate"],
            "refused": rate((g["refusal_score"] >= threshold).to_list())["rate"],
        }
    return out


def write(
    name: str,
    prompts: pl.DataFrame,
    answers: list[str],
    judges,
    threshold: float,
    data_dir: Path = paths.EVAL_DATA,
    metrics_dir: Path = paths.EVAL_METRICS,
) -> dict:
    """Score a model's answers, write its generations and metrics (<name>.parquet, <name>.json); returns the metrics."""
    gen = score(name, prompts, answers, judges)
    schema.write(gen, Path(data_dir) / f"{name}.parquet", schema.GENERATIONS)
    result = summarize(gen, threshold)
    result["judges"] = judges.describe()
    paths.write_json(Path(metrics_dir) / f"{name}.json", result)
    log.info(
        "%s: %d answers scored; harmful %.3f, over-refusal %.3f",
        name,
        gen.height,
        result.get("harmful_rate", {}).get("rate", float("nan")),
        result.get("over_refusal", {}).get("rate", float("nan")),
    )
    return result
