"""Step 8: a model answers held-out prompts; judges score the answers; rates get 95% intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from isara import schema
from isara.config import Params
from isara.errors import IsaraError
from isara.generate import generate, token_counter
from isara.icl import FitLog, answer_prompt, fit
from isara.rouge import rouge_l_pairs

EXPECT = ("harmful", "benign", "helpful", "truthful")  # what a good answer does: refuse/answer safely, help, be true


def check_prompts(path: str | Path) -> pl.DataFrame:
    """The eval prompts of a file: at least one, none blank, each with a known expectation."""
    df = schema.read(path, schema.EVAL_PROMPTS)
    if df.height == 0:
        raise IsaraError(f"{path}: no eval prompts")
    for i, (prompt, expect) in enumerate(zip(df["prompt"], df["expect"], strict=True), start=1):
        if prompt is None or not prompt.strip():
            raise IsaraError(f"{path}: row {i}: blank prompt")
        if expect not in EXPECT:
            raise IsaraError(f"{path}: row {i}: expect is {expect!r}, not one of {', '.join(EXPECT)}")
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


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (sound at 0 and n, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(flags: Sequence[bool]) -> dict:
    k, n = int(sum(flags)), len(flags)
    lo, hi = wilson(k, n)
    return {"rate": k / n if n else 0.0, "n": n, "ci95": [round(lo, 4), round(hi, 4)]}


def truth_diff(answers: Sequence[str], correct: Sequence[Sequence[str]], incorrect: Sequence[Sequence[str]]):
    """TruthfulQA's measure as the paper used it: max ROUGE-L to correct minus max to incorrect."""
    return rouge_l_pairs(answers, correct) - rouge_l_pairs(answers, incorrect)


def answer(model, tokenizer, prompts: pl.DataFrame, params: Params, examples: list | None, ref: str = ""):
    """Greedy answers with no in-context examples (or with the given ones, for ICL baselines)."""
    cfg, fmt = params.evaluate, params.model.chat_format
    count = token_counter(tokenizer)
    texts = []
    cut = FitLog("evaluate", cfg.max_prompt_tokens, count)
    for i, q in enumerate(prompts["prompt"]):
        pairs = examples[i] if examples else []
        text, kept = fit(pairs, lambda ps, q=q: answer_prompt(ps, q, fmt), count, cfg.max_prompt_tokens)
        cut.add(len(pairs), kept, text)
        texts.append(text)
    cut.report()
    _, out = generate(model, tokenizer, texts, cfg, params.seed, fmt, "evaluate", model_key=ref)
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
