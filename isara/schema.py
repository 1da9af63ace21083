"""Parquet schemas of every artifact, and reading / writing them with validation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from isara.errors import IsaraError
from isara.paths import atomic

Str, I32, F64, Bool = pl.Utf8, pl.Int32, pl.Float64, pl.Boolean

SEED = {"sample_id": Str, "question": Str, "answer": Str, "origin": Str, "source": Str}
POOL = {**SEED, "iteration": I32}
PROPOSED = {
    "sample_id": Str,  # hash of the question
    "iteration": I32,
    "origin": Str,
    "model_ref": Str,  # hash of the checkpoint that wrote it
    "context_ids": pl.List(Str),  # pool examples shown in the prompt
    "question": Str,
    "raw": Str,  # the model's continuation before cleaning
}
EMBEDDINGS = {"text_id": Str, "model": Str, "embedding": pl.List(pl.Float32)}
INDEX_IDS = {"item": I32, "sample_id": Str}
LABELED = {
    **PROPOSED,
    "neighbor_ids": pl.List(Str),  # pool examples retrieved as the answer's context
    "neighbor_dists": pl.List(F64),
    "answer": Str,
}
FILTERED = {
    **LABELED,
    "rouge_context": F64,  # max ROUGE-L of the question vs the questions its prompt showed
    "rouge_pool": F64,  # max ROUGE-L of the question vs the whole pool
    "question_words": I32,
    "answer_words": I32,
    "reject_reason": Str,  # null when accepted
}
TRAIN = {**POOL, "weight": F64}
EXPECT = ("harmful", "benign", "helpful", "truthful")  # what a good answer does: refuse/answer safely, help, be true
EVAL_PROMPTS = {
    "prompt_id": Str,
    "prompt": Str,
    "suite": Str,  # e.g. category, beavertails_eval, xstest_safe, alpaca, truthfulqa
    "category": Str,
    "expect": Str,  # harmful | benign | truthful | helpful
    "references": pl.List(Str),  # correct answers (TruthfulQA) or a reference output
    "incorrect": pl.List(Str),  # incorrect answers (TruthfulQA)
}
XSTEST_SPLIT = {"xstest_id": Str, "prompt": Str, "label": Str, "split": Str}  # split: eval | judge_train | judge_test
JUDGE_DATA = {"question": Str, "answer": Str, "label": I32, "source": Str, "split": Str}
GENERATIONS = {
    "model": Str,
    "prompt_id": Str,
    "suite": Str,
    "category": Str,
    "expect": Str,
    "prompt": Str,
    "answer": Str,
    "harm_score": F64,
    "refusal_score": F64,
    "truth_diff": F64,
}

WINRATE = {  # one instruction answered by a model and by the pretrained model, and the judge's decision
    "model": Str,
    "prompt_id": Str,
    "prompt": Str,
    "answer": Str,
    "base_answer": Str,
    "score": F64,
    "base_score": F64,
    "outcome": I32,  # 1 the model wins, 0 tie, -1 the pretrained model wins
}


def text_id(*parts: str) -> str:
    """Stable content hash of one or more texts: the identity of a row."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8"))
    return h.hexdigest()[:16]


def norm(text: str) -> str:
    """The key under which two prompts count as the same prompt (case and spacing ignored)."""
    return " ".join(text.lower().split())


def conform(df: pl.DataFrame, schema: dict, name: str) -> pl.DataFrame:
    """Check columns and types and put them in schema order."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise IsaraError(f"{name}: missing column(s) {', '.join(missing)}")
    try:
        return df.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as err:
        raise IsaraError(f"{name}: column of wrong type ({str(err).splitlines()[0]})") from None


def write(df: pl.DataFrame, path: str | Path, schema: dict) -> None:
    """Validate against the schema, then write atomically (isara.paths.atomic)."""
    path = Path(path)
    df = conform(df, schema, str(path))
    with atomic(path) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=False)


def read(path: str | Path, schema: dict) -> pl.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise IsaraError(f"{path}: file not found")
    try:
        df = pl.read_parquet(path)
    except Exception as err:  # polars raises several types for corrupt files
        raise IsaraError(f"{path}: not a readable parquet file ({type(err).__name__})") from None
    return conform(df, schema, str(path))
