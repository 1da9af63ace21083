"""Step 3: an Annoy index over pool question embeddings, and kNN queries against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from isara import schema
from isara.config import IndexParams
from isara.errors import IsaraError
from isara.paths import atomic


def build(vectors: np.ndarray, sample_ids: list[str], cfg: IndexParams, seed: int, path: Path) -> pl.DataFrame:
    """Build and save the index (fixed seed, one build thread: the file is byte-identical)."""
    from annoy import AnnoyIndex

    index = AnnoyIndex(vectors.shape[1], cfg.metric)
    index.set_seed(seed)
    for i, v in enumerate(vectors):
        index.add_item(i, v.tolist())
    index.build(cfg.n_trees, n_jobs=1)
    with atomic(path) as tmp:
        index.save(str(tmp))
        index.unload()
    return pl.DataFrame({"item": list(range(len(sample_ids))), "sample_id": sample_ids}, schema=schema.INDEX_IDS)


def query(path: Path, ids: pl.DataFrame, dim: int, metric: str, vectors: np.ndarray, n_neighbors: int):
    """The n_neighbors nearest pool items of each vector: (sample ids, distances), nearest first."""
    from annoy import AnnoyIndex

    index = AnnoyIndex(dim, metric)
    if not Path(path).is_file():
        raise IsaraError(f"{path}: file not found")
    try:
        index.load(str(path))
    except OSError as err:
        raise IsaraError(f"{path}: not a readable Annoy index of dim {dim} ({str(err).split('.')[0]})") from None
    names = ids.sort("item")["sample_id"].to_list()
    if index.get_n_items() != len(names):
        raise IsaraError(f"{path}: the index holds {index.get_n_items()} items but its id map {len(names)}")
    k = min(n_neighbors, len(names))
    # search_k = nodes inspected per query; x100 keeps recall@k >= 0.95 up to a few thousand
    # pool items on real question embeddings (BENCHMARKS.md; x20 gave 0.93 at 3,500).
    search_k = k * index.get_n_trees() * 100
    out_ids, out_dists = [], []
    for v in vectors:
        items, dists = index.get_nns_by_vector(v.tolist(), k, search_k=search_k, include_distances=True)
        out_ids.append([names[i] for i in items])
        out_dists.append([float(d) for d in dists])
    index.unload()
    return out_ids, out_dists
