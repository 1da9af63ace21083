"""Step 2: sentence embeddings of questions, cached by text hash and model across iterations."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import polars as pl

from isara import schema
from isara.errors import IsaraError
from isara.models import load_embedder

log = logging.getLogger(__name__)


# all-MiniLM-L6-v2 on this 2-core CPU: 232 texts/s at batch 16, 170 at 64, 74 at 256 (BENCHMARKS.md)
BATCH = 16


def encode(texts: Sequence[str], model: str, batch_size: int = BATCH, max_tokens: int | None = None) -> np.ndarray:
    """Unit-norm float32 embeddings, one row per text; texts cut at max_tokens (None: the model's own limit)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    enc = load_embedder(model)
    kept = enc.max_seq_length  # the embedder is shared (lru_cache): its setting is restored
    enc.max_seq_length = max_tokens or kept
    try:
        vecs = enc.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=len(texts) > 256
        )
    finally:
        enc.max_seq_length = kept
    return np.asarray(vecs, dtype=np.float32)


def embed_new(cache: pl.DataFrame, texts: Sequence[str], model: str) -> tuple[pl.DataFrame, int]:
    """Add embeddings of texts not yet in the cache; returns (cache, number embedded)."""
    known = set(cache.filter(pl.col("model") == model)["text_id"].to_list())
    todo: dict[str, str] = {}
    for t in texts:
        tid = schema.text_id(t)
        if tid not in known:
            todo.setdefault(tid, t)
    ids = sorted(todo)
    vecs = encode([todo[i] for i in ids], model)
    log.info("embedded %d new texts (%d already cached)", len(ids), len(set(texts)) - len(ids))
    new = pl.DataFrame(
        {"text_id": ids, "model": [model] * len(ids), "embedding": [v.tolist() for v in vecs]},
        schema=schema.EMBEDDINGS,
    )
    return pl.concat([cache, new]).sort(["model", "text_id"]), len(ids)


def lookup(cache: pl.DataFrame, texts: Sequence[str], model: str) -> np.ndarray:
    """Embeddings of texts, in order; each must already be cached."""
    rows = cache.filter(pl.col("model") == model)
    table = dict(zip(rows["text_id"].to_list(), rows["embedding"].to_list(), strict=True))
    missing = [t for t in texts if schema.text_id(t) not in table]
    if missing:
        raise IsaraError(
            f"embedding cache: no {model} embedding of {len(missing)} text(s), e.g. {missing[0][:60]!r} (rerun embed)"
        )
    return np.asarray([table[schema.text_id(t)] for t in texts], dtype=np.float32)


def empty_cache() -> pl.DataFrame:
    return pl.DataFrame(schema=schema.EMBEDDINGS)
