"""Embedding throughput: the pipeline's batched encoder calls against one text per call.

Real questions of the kind the pipeline embeds (SPARD prompts), all-MiniLM-L6-v2 on the CPU.
Run alone: python -m pytest tests/bench/test_bench_embed.py --benchmark-only
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from isara.embed import BATCH, encode

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"
N_TEXTS, N_SINGLE = 1024, 64
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    path = RAW / "beavertails_spard_pairs" / "beavertails_spard_pairs_with_categories.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return list(dict.fromkeys(json.loads(line)["prompt"] for line in f))[:N_TEXTS]


@pytest.mark.parametrize("batch_size", [16, 64, 256])
def test_embedding_throughput(benchmark, texts: list[str], batch_size: int) -> None:
    encode(texts[:8], MODEL)  # load the encoder outside the timings
    start = time.perf_counter()
    single = np.vstack([encode([t], MODEL, batch_size=1) for t in texts[:N_SINGLE]])
    single_rate = N_SINGLE / (time.perf_counter() - start)
    vecs = benchmark.pedantic(encode, args=(texts, MODEL), kwargs={"batch_size": batch_size}, rounds=1)
    rate = len(texts) / benchmark.stats.stats.median
    # Batching must not change a vector beyond float noise (padding is masked out).
    assert np.abs(vecs[:N_SINGLE] - single).max() < 1e-4
    benchmark.extra_info.update(
        input=f"{len(texts)} real questions, {MODEL}",
        baseline=f"one text per call: {single_rate:.0f} texts/s",
        fast=f"batch {batch_size}{' (pipeline default)' if batch_size == BATCH else ''}: {rate:.0f} texts/s",
        speed_ratio=rate / single_rate,
        floor="reported",
    )
