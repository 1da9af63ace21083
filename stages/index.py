"""Stage index@<run>: Annoy index over the embeddings of the pool P(k-1)."""

import logging

from isara import embed, index, paths, schema
from isara.config import load_params
from isara.stage import run_arg, run_stage

log = logging.getLogger("index")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    _, prev = paths.spec(params.iterations, run)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL).sort("sample_id")
    cache = schema.read(paths.data(run) / "embeddings.parquet", schema.EMBEDDINGS)
    vectors = embed.lookup(cache, pool["question"].to_list(), params.model.embedder)
    ids = index.build(vectors, pool["sample_id"].to_list(), params.index, params.seed, paths.data(run) / "index.ann")
    schema.write(ids, paths.data(run) / "index_ids.parquet", schema.INDEX_IDS)
    log.info("indexed %d pool questions (%s, %d trees)", pool.height, params.index.metric, params.index.n_trees)


if __name__ == "__main__":
    run_stage(main)
