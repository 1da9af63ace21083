"""Retrieval: Annoy vs exact cosine search on real embeddings of the pipeline's own kind of questions.

Run alone: python -m pytest tests/bench/test_bench_retrieval.py --benchmark-only
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from isara import index
from isara.config import IndexParams
from isara.embed import encode

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"
K = 3
MIN_RECALL = 0.95


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    path = RAW / "beavertails_spard_pairs" / "beavertails_spard_pairs_with_categories.jsonl.gz"
    with gzip.open(path, "rt") as f:
        texts = list(dict.fromkeys(json.loads(line)["prompt"] for line in f))
    return encode(texts[:4000], "all-MiniLM-L6-v2")


def exact_batched(pool: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ pool.T), axis=1, kind="stable")[:, :k]


def exact_refit(pool: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The reference code's way: a fresh exact search per query (sklearn NearestNeighbors refit)."""
    from sklearn.neighbors import NearestNeighbors

    out = []
    for q in queries:
        nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(pool)
        out.append(nn.kneighbors(q[None], return_distance=False)[0])
    return np.asarray(out)


@pytest.mark.parametrize("pool_size", [256, 1024, 3500])
def test_annoy_recall_and_speed(benchmark, vectors: np.ndarray, pool_size: int, tmp_path: Path) -> None:
    pool, queries = vectors[:pool_size], vectors[-400:]
    ids = [str(i) for i in range(pool_size)]
    id_map = index.build(pool, ids, IndexParams(), 0, tmp_path / "i.ann")

    def annoy_query():
        return index.query(tmp_path / "i.ann", id_map, pool.shape[1], "angular", queries, K)[0]

    found = benchmark.pedantic(annoy_query, rounds=3, warmup_rounds=1)
    annoy_s = benchmark.stats.stats.median
    truth = exact_batched(pool, queries, K)
    recall = np.mean([len({int(x) for x in f} & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)])
    start = time.perf_counter()
    exact_batched(pool, queries, K)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    exact_refit(pool, queries[:40], K)
    refit_s = (time.perf_counter() - start) * len(queries) / 40
    benchmark.extra_info.update(
        input=f"pool {pool_size}, 400 queries, k={K}",
        baseline=f"exact refit per query {refit_s:.3f}s; numpy batched {batched_s:.4f}s",
        fast=f"Annoy {annoy_s:.4f}s, recall@{K} {recall:.3f}",
        speed_ratio=refit_s / annoy_s,
        annoy_vs_batched=batched_s / annoy_s,
        recall=recall,
        floor=f"recall >= {MIN_RECALL}",
    )
    assert recall >= MIN_RECALL
