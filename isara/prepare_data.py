"""Stage prepare_data: every domain's seed and eval split, derived deterministically from data/raw."""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path
from typing import NamedTuple

import polars as pl

from isara import schema
from isara.errors import IsaraError
from isara.raw import alpaca_references, need, read_csv, read_jsonl
from isara.schema import norm

log = logging.getLogger(__name__)

# Draws every domain's seed set and eval split, and the judges' training rows. Apart from the params'
# `seed` on purpose: that one draws what the method samples, so the runs of a study over seeds
# (isara/study.py) share one D0, one prompt set and one judge, and differ only in the method's draws.
SPLIT_SEED = 0


class Sizes(NamedTuple):
    """The data params the splits depend on (and nothing else of the data section)."""

    category: str  # the BeaverTails category of the safety seed and its eval prompts
    n_seed: int
    min_answer_words: int
    n_xstest_eval: int
    n_alpaca_eval: int


_SENTENCE_END = re.compile(r"""[.!?]["')\]]*(?=\s|$)""")
# "1." opens a list item (also glued on as in "issue.2.") and "Mr." a name; neither ends a sentence.
_FALSE_END = re.compile(r"((^|\n|(?<!\d)[.!?:])\s*\d+|\b(Mr|Mrs|Ms|Dr|Prof))\.$")


def trim_to_sentence(text: str) -> str:
    """Cut text after its last complete sentence (SPARD answers stop mid-sentence)."""
    for end in reversed(list(_SENTENCE_END.finditer(text))):
        if not _FALSE_END.search(text[: end.end()]):
            return text[: end.end()].strip()
    return ""


def _seed_frame(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": [schema.text_id(q, a) for q, a, _ in rows],
            "question": [q for q, _, _ in rows],
            "answer": [a for _, a, _ in rows],
            "origin": ["seed"] * len(rows),
            "source": [s for _, _, s in rows],
        }
    )


def _eval_frame(rows: list[dict]) -> pl.DataFrame:
    for r in rows:
        r["prompt_id"] = schema.text_id(r["suite"], r["prompt"])
        r.setdefault("references", [])
        r.setdefault("incorrect", [])
    # maintain_order: without it polars returns rows in a thread-dependent order, run to run.
    df = pl.DataFrame(rows, schema=schema.EVAL_PROMPTS)
    return df.unique("prompt_id", keep="first", maintain_order=True)


def safety_eval(raw: Path, p: Sizes, rng: random.Random) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Eval prompts of the safety domain, and the XSTest prompt split (eval vs judges)."""
    rows: list[dict] = []
    seen: set[str] = set()
    for r in read_jsonl(raw / "beavertails_30k_test_prompts/beavertails_30k_test_prompts.jsonl"):
        if p.category in r["categories"] and norm(r["prompt"]) not in seen:
            seen.add(norm(r["prompt"]))
            rows.append({"prompt": r["prompt"], "suite": "category", "category": p.category, "expect": "harmful"})
    if not rows:
        raise IsaraError(f"data.category: no BeaverTails test prompt has category '{p.category}'")
    for r in read_csv(raw / "beavertails_evaluation/BeaverTails-Evaluation.csv"):
        rows.append(
            {"prompt": r["prompt"], "suite": "beavertails_eval", "category": r["category"], "expect": "harmful"}
        )
    xs = read_csv(raw / "xstest/xstest_prompts.csv")
    safe = [r for r in xs if r["label"] == "safe"]
    rng.shuffle(safe)
    eval_ids = {r["id"] for r in safe[: p.n_xstest_eval]}
    rest = sorted((r for r in xs if r["id"] not in eval_ids), key=lambda r: int(r["id"]))
    rng.shuffle(rest)
    judge_test = {r["id"] for r in rest[: len(rest) * 3 // 10]}  # 30% of judge prompts held out
    split = pl.DataFrame(
        {
            "xstest_id": [r["id"] for r in xs],
            "prompt": [r["prompt"] for r in xs],
            "label": [r["label"] for r in xs],
            "split": [
                "eval" if r["id"] in eval_ids else "judge_test" if r["id"] in judge_test else "judge_train" for r in xs
            ],
        }
    )
    for r in xs:
        if r["id"] in eval_ids:
            rows.append({"prompt": r["prompt"], "suite": "xstest_safe", "category": r["type"], "expect": "benign"})
    alpaca = json.loads(need(raw / "alpaca_eval/alpaca_eval_text_davinci_003.json").read_text("utf-8"))
    refs = alpaca_references(raw)  # the win-rate judge compares answers with them
    for r in rng.sample(alpaca, p.n_alpaca_eval):
        ref = [refs[norm(r["instruction"])]] if refs.get(norm(r["instruction"])) else []
        rows.append(
            {
                "prompt": r["instruction"],
                "suite": "alpaca",
                "category": r["dataset"],
                "expect": "benign",
                "references": ref,
            }
        )
    return _eval_frame(rows), split


def safety_seed(raw: Path, p: Sizes, excluded: set[str], rng: random.Random) -> pl.DataFrame:
    """D0: safe answers to prompts of the chosen category, none of them an eval prompt."""
    path = need(raw / "beavertails_spard_pairs/beavertails_spard_pairs_with_categories.jsonl.gz")
    rows, seen = [], set(excluded)
    for r in read_jsonl(path):
        # SPARD's test split is the harm judge's held-out set: keep it out of the seed.
        if r["spard_split"] != "train" or p.category not in r["beavertails_30k_train_unsafe_categories"]:
            continue
        answer = trim_to_sentence(r["safe_response"])
        if norm(r["prompt"]) in seen or len(answer.split()) < p.min_answer_words:
            continue
        seen.add(norm(r["prompt"]))
        rows.append((r["prompt"].strip(), answer, "beavertails_spard"))
    rng.shuffle(rows)
    return _seed_frame(rows[: p.n_seed])


def truthfulqa(raw: Path, p: Sizes, rng: random.Random) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = read_csv(raw / "truthfulqa/TruthfulQA.csv")
    rng.shuffle(rows)
    seed = [(r["Question"], r["Best Answer"], "truthfulqa") for r in rows[: p.n_seed]]
    split = lambda s: [a.strip() for a in s.split(";") if a.strip()]  # noqa: E731
    evals = [
        {
            "prompt": r["Question"],
            "suite": "truthfulqa",
            "category": r["Category"],
            "expect": "truthful",
            # The TruthfulQA generation eval counts "I have no comment." as a true answer.
            "references": split(r["Correct Answers"]) + ["I have no comment."],
            "incorrect": split(r["Incorrect Answers"]),
        }
        for r in rows[p.n_seed :]
    ]
    return _seed_frame(seed), _eval_frame(evals)


def alpaca(raw: Path, p: Sizes, rng: random.Random) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The authors' 63 recovered Alpaca seeds, topped up from AlpacaEval references."""
    authors = json.loads(need(raw / "alpaca_eval/isara_authors_alpaca_seed63.json").read_text("utf-8"))
    ref = json.loads(need(raw / "alpaca_eval/alpaca_eval_text_davinci_003.json").read_text("utf-8"))
    refs = alpaca_references(raw)  # GPT-4 Turbo's outputs: the eval references, never a seed answer
    seed = [(r["input"], r["answer"], "isara_authors") for r in authors][: p.n_seed]
    used = {norm(q) for q, _, _ in seed}
    # Two davinci-003 outputs are empty: no seed answer, no reference.
    rest = [r for r in ref if norm(r["instruction"]) not in used and r["output"].strip()]
    rng.shuffle(rest)
    top_up = rest[: max(0, p.n_seed - len(seed))]
    seed += [(r["instruction"], r["output"], "alpaca_eval_davinci003") for r in top_up]
    evals = [
        {
            "prompt": r["instruction"],
            "suite": "alpaca",
            "category": r["dataset"],
            "expect": "helpful",
            "references": [refs[norm(r["instruction"])]] if refs.get(norm(r["instruction"])) else [],
        }
        for r in rest[len(top_up) : len(top_up) + p.n_alpaca_eval]
    ]
    return _seed_frame(seed), _eval_frame(evals)


def prepare(raw: Path, out: Path, p: Sizes, seed: int) -> dict[str, int]:
    """Write every domain's seed and eval split; returns row counts."""
    frames: dict[str, tuple[pl.DataFrame, dict]] = {}
    eval_safety, xsplit = safety_eval(raw, p, random.Random(seed))
    # No seed prompt may be an eval prompt or a judge prompt (XSTest judge_train / judge_test).
    excluded = {norm(t) for t in eval_safety["prompt"]} | {norm(t) for t in xsplit["prompt"]}
    frames["eval_safety"] = (eval_safety, schema.EVAL_PROMPTS)
    frames["xstest_split"] = (xsplit, schema.XSTEST_SPLIT)
    frames["seed_safety"] = (safety_seed(raw, p, excluded, random.Random(seed)), schema.SEED)
    tqa_seed, tqa_eval = truthfulqa(raw, p, random.Random(seed))
    frames["seed_truthfulqa"], frames["eval_truthfulqa"] = (tqa_seed, schema.SEED), (tqa_eval, schema.EVAL_PROMPTS)
    al_seed, al_eval = alpaca(raw, p, random.Random(seed))
    frames["seed_alpaca"], frames["eval_alpaca"] = (al_seed, schema.SEED), (al_eval, schema.EVAL_PROMPTS)
    for name, (df, sch) in frames.items():
        schema.write(df, out / f"{name}.parquet", sch)
        log.info("wrote %s/%s.parquet (%d rows)", out, name, df.height)
    return {name: df.height for name, (df, _) in frames.items()}
