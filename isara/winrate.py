"""Instruction following: each model's win rate against the pretrained model's own answers.

The authors compared M(k) with the base model on AlpacaEval instructions through GPT-4. That
judge cannot run offline, so the default one is a *reference-similarity proxy*, and says so in
every metrics file: of two answers to an instruction, the one whose sentence embedding is closer
(cosine) to AlpacaEval's GPT-4 Turbo reference output wins; closer by less than `tie_margin` is a
tie. It rewards answering on topic and penalises refusing or echoing the instruction; it cannot
rank two on-topic answers by quality. Its accuracy is measured on answer pairs of known order
built from AlpacaEval instructions that are not eval prompts. `judge.preference` also takes a
Hugging Face reward model (sequence classification with one logit: higher is better).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import polars as pl

from isara import schema
from isara.embed import encode
from isara.errors import IsaraError
from isara.raw import alpaca_references, need
from isara.schema import norm
from isara.stats import wilson

log = logging.getLogger(__name__)

BASE = "pretrained"  # the model every other one is compared with, as the authors did
SUITE = "alpaca"
PROXY = "reference_similarity"
MAX_TOKENS = 128  # evaluated answers are <= 40 new tokens (default profile); references are cut to the same window
GOOD_WORDS = 40  # known-good answers are cut to about the length of an evaluated answer
# Score = cos(answer, reference) - ECHO_PENALTY * cos(answer, instruction): without the second term
# an answer that only restates the instruction beats a real answer about half the time (the
# reference is about the instruction too). Chosen on the "tune" part of the known pairs (296
# instructions): 0 / 0.3 / 0.5 / 0.7 gave echo-pair accuracy 0.42 / 0.63 / 0.76 / 0.89, off-topic
# 0.98 / 0.97 / 0.94 / 0.88, refusal 0.99 / 0.97 / 0.95 / 0.92; 0.5 keeps refusals (the failure an
# aligned model drifts into) above 0.94.
ECHO_PENALTY = 0.5
REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with that. Is there anything else I can help you with?",
    "As an AI language model, I am not able to do that.",
    "I apologize, but I won't be able to provide that information.",
)


class Preference:
    """Scores answers to instructions; of two answers the higher score wins."""

    def __init__(self, kind: str, embedder: str, trust_remote_code: bool = False):
        self.kind, self.embedder, self.trust_remote_code = kind, embedder, trust_remote_code
        self._hf = None
        self._cache: dict[str, np.ndarray] = {}  # each distinct text is embedded once

    def describe(self) -> str:
        if self.kind == PROXY:
            return (
                f"reference-similarity proxy: cosine of {self.embedder} embeddings (first {MAX_TOKENS} tokens) "
                f"to the AlpacaEval GPT-4 Turbo reference, minus {ECHO_PENALTY} x cosine to the instruction; "
                "rewards on-topic, non-refusing answers; not a quality judge"
            )
        return f"HF reward model {self.kind} (one logit, higher is better)"

    def scores(self, instructions: list[str], answers: list[str], references: list[str]) -> np.ndarray:
        if not (len(instructions) == len(answers) == len(references)):
            raise IsaraError("preference judge: instructions, answers and references differ in length")
        if not answers:
            return np.zeros(0)
        if self.kind == PROXY:
            if any(not r.strip() for r in references):
                raise IsaraError(f"preference judge {PROXY}: an instruction has no reference output")
            a, r, q = self._embed(answers), self._embed(references), self._embed(instructions)
            return (a * r).sum(axis=1) - ECHO_PENALTY * (a * q).sum(axis=1)
        return self._reward(instructions, answers)

    def _embed(self, texts: list[str]) -> np.ndarray:
        todo = sorted(set(texts) - self._cache.keys())
        if todo:
            vecs = encode(todo, self.embedder, max_tokens=MAX_TOKENS)
            self._cache.update(zip(todo, vecs.astype(np.float64), strict=True))
        return np.stack([self._cache[t] for t in texts])

    def _reward(self, instructions: list[str], answers: list[str]) -> np.ndarray:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if self._hf is None:
            try:
                tok = AutoTokenizer.from_pretrained(self.kind, trust_remote_code=self.trust_remote_code)
                model = AutoModelForSequenceClassification.from_pretrained(
                    self.kind, use_safetensors=True, trust_remote_code=self.trust_remote_code
                )
            except (OSError, ValueError) as e:
                raise IsaraError(f"judge.preference: cannot load reward model {self.kind!r}: {e}") from None
            if model.config.num_labels != 1:
                raise IsaraError(
                    f"judge.preference: {self.kind} has {model.config.num_labels} labels; a reward model has one"
                )
            self._hf = (tok, model.eval())
        tok, model = self._hf
        out = []
        with torch.inference_mode():
            for i in range(0, len(answers), 16):
                batch = tok(
                    instructions[i : i + 16],
                    answers[i : i + 16],
                    truncation=True,
                    max_length=512,
                    padding=True,
                    return_tensors="pt",
                )
                out.append(model(**batch).logits[:, 0].float().numpy())
        return np.concatenate(out).astype(np.float64)


def outcomes(a: np.ndarray, b: np.ndarray, margin: float) -> np.ndarray:
    """+1 where a beats b by more than margin, -1 where b beats a, 0 for a tie."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return np.where(d > margin, 1, np.where(d < -margin, -1, 0))


def win_rate(out: np.ndarray) -> dict:
    """Share of wins, a tie counting half (AlpacaEval's convention), with a 95% Wilson interval."""
    wins, ties, n = int((out > 0).sum()), int((out == 0).sum()), len(out)
    lo, hi = wilson(wins + ties / 2, n)
    return {
        "rate": round((wins + ties / 2) / n, 4) if n else 0.0,
        "ci95": [round(lo, 4), round(hi, 4)],
        "wins": wins,
        "ties": ties,
        "losses": n - wins - ties,
        "n": n,
    }


def known_pairs(raw: Path, excluded: set[str], n: int, seed: int, part: str = "measure") -> pl.DataFrame:
    """Answer pairs whose better half is known: a real answer against an off-topic one, a refusal, an echo.

    The real answer is text-davinci-003's AlpacaEval output cut to about the length of an evaluated
    answer; the reference is GPT-4 Turbo's output, as for the evaluated models. The instructions
    split by hash into a "tune" part (ECHO_PENALTY was chosen on it) and a "measure" part.
    """
    if part not in ("tune", "measure"):
        raise ValueError(f"part must be tune or measure, not {part}")
    refs = alpaca_references(raw)
    davinci = json.loads(need(raw / "alpaca_eval/alpaca_eval_text_davinci_003.json").read_text("utf-8"))
    rows = [
        r
        for r in davinci
        if norm(r["instruction"]) not in excluded
        and r["output"].strip()
        and refs.get(norm(r["instruction"]))
        and (int(schema.text_id(norm(r["instruction"])), 16) % 2 == 1) == (part == "measure")
    ]
    rng = random.Random(seed)
    rng.shuffle(rows)
    rows = rows[:n]
    if len(rows) < 2:
        raise IsaraError(f"{raw}/alpaca_eval: fewer than 2 non-eval instructions to measure the preference judge")
    cut = lambda t: " ".join(t.split()[:GOOD_WORDS])  # noqa: E731
    out = []
    for i, r in enumerate(rows):
        good = cut(r["output"])
        worse = {
            "off_topic": cut(rows[(i + 1) % len(rows)]["output"]),
            "refusal": REFUSALS[rng.randrange(len(REFUSALS))],
            "echo": r["instruction"],
        }
        for kind, bad in worse.items():
            out.append((r["instruction"], refs[norm(r["instruction"])], good, bad, kind))
    return pl.DataFrame(out, schema=["instruction", "reference", "better", "worse", "kind"], orient="row")


def accuracy(judge: Preference, pairs: pl.DataFrame, margin: float) -> dict:
    """Share of known-order pairs the judge orders right (a tie counts as wrong), per kind of pair."""
    ins, ref = pairs["instruction"].to_list(), pairs["reference"].to_list()
    out = outcomes(
        judge.scores(ins, pairs["better"].to_list(), ref), judge.scores(ins, pairs["worse"].to_list(), ref), margin
    )
    right = out > 0
    per_kind = {
        k: round(float(right[(pairs["kind"] == k).to_numpy()].mean()), 4)
        for k in sorted(pairs["kind"].unique().to_list())
    }
    return {
        "accuracy": round(float(right.mean()), 4),
        "by_pair": per_kind,
        "ties": int((out == 0).sum()),
        "n": len(out),
    }


KNOWN_INSTRUCTIONS = 400  # at most; x 3 kinds of known-order pairs measure the judge


def judge_accuracy(
    judge: Preference, raw: Path, evals: pl.DataFrame, max_test: int | None, seed: int, margin: float
) -> dict:
    """The judge measured on known-order pairs built from instructions that are not eval prompts."""
    n = min(KNOWN_INSTRUCTIONS, max_test or KNOWN_INSTRUCTIONS)
    measured = accuracy(judge, known_pairs(raw, {norm(p) for p in evals["prompt"]}, n, seed), margin)
    log.info("preference judge: %.3f of %d known-order pairs ordered right %s",
             measured["accuracy"], measured["n"], measured["by_pair"])  # fmt: skip
    return measured


def compare(
    generations: dict[str, pl.DataFrame], prompts: pl.DataFrame, judge: Preference, margin: float
) -> tuple[dict, pl.DataFrame]:
    """Each model against BASE on the instruction prompts both answered; per-pair decisions kept.

    Instruction prompts are the AlpacaEval suite and any prompt whose `expect` is "helpful";
    `prompts` (schema.EVAL_PROMPTS) gives each its reference output, which the proxy needs.
    No instruction prompt (a TruthfulQA-only eval) means no win rate: empty results.
    """
    if BASE not in generations:
        raise IsaraError(f"win rate: no generations of the {BASE} model (run baseline@{BASE} first)")
    refs = prompts.select("prompt_id", pl.col("references").list.first().fill_null("").alias("reference"))
    instruction = (pl.col("suite") == SUITE) | (pl.col("expect") == "helpful")
    base = generations[BASE].filter(instruction)
    base = base.join(refs, on="prompt_id", how="left").with_columns(pl.col("reference").fill_null(""))
    if judge.kind == PROXY:
        unreferenced = base.filter(pl.col("reference").str.strip_chars() == "").height
        if unreferenced:
            log.warning("win rate: %d instruction prompt(s) have no reference output and are left out", unreferenced)
        base = base.filter(pl.col("reference").str.strip_chars() != "")
    if base.height == 0:
        log.warning("win rate: no instruction prompt with a reference in the eval set; no win rate")
        return {}, pl.DataFrame(schema=schema.WINRATE)
    base_score = judge.scores(base["prompt"].to_list(), base["answer"].to_list(), base["reference"].to_list())
    base = base.with_columns(pl.Series("base_score", base_score))
    results, frames = {}, []
    for name in sorted(generations):
        if name == BASE:
            continue
        g = (
            generations[name]
            .filter(pl.col("prompt_id").is_in(base["prompt_id"].implode()))
            .select("prompt_id", "answer")
        )
        both = base.join(g, on="prompt_id", how="inner", suffix="_model").sort("prompt_id")
        if both.height == 0:
            log.warning("win rate: %s answered none of the instruction prompts; no win rate", name)
            continue
        score = judge.scores(both["prompt"].to_list(), both["answer_model"].to_list(), both["reference"].to_list())
        out = outcomes(score, both["base_score"].to_numpy(), margin)
        results[name] = win_rate(out)
        frames.append(
            pl.DataFrame(
                {
                    "model": [name] * both.height,
                    "prompt_id": both["prompt_id"],
                    "prompt": both["prompt"],
                    "answer": both["answer_model"],
                    "base_answer": both["answer"],
                    "score": score,
                    "base_score": both["base_score"],
                    "outcome": out.astype(np.int32),
                },
                schema=schema.WINRATE,
            )
        )
    decisions = pl.concat(frames) if frames else pl.DataFrame(schema=schema.WINRATE)
    return results, decisions
