"""Stage init_pool: P0 = D0 (the seed named in params) and the embeddings of its questions.

it0 proposes and labels nothing: its empty proposed/labeled files are what a run extending "it0"
(i.e. no other run) starts from.
"""

import logging

import polars as pl

from isara import embed, paths, schema
from isara.cli import run_stage
from isara.config import load_params
from isara.merge import seed_pool
from isara.seeds import check_seed

log = logging.getLogger("init_pool")


def main() -> None:
    params = load_params()
    seed = schema.read(params.data.seed_file, schema.SEED)
    check_seed(seed, params, params.data.seed_file)
    pool = seed_pool(seed)
    cache, _ = embed.embed_new(embed.empty_cache(), pool["question"].to_list(), params.model.embedder)
    schema.write(pool, paths.data("it0") / "pool.parquet", schema.POOL)
    schema.write(cache, paths.data("it0") / "embeddings.parquet", schema.EMBEDDINGS)
    schema.write(pl.DataFrame(schema=schema.PROPOSED), paths.data("it0") / "proposed.parquet", schema.PROPOSED)
    schema.write(pl.DataFrame(schema=schema.LABELED), paths.data("it0") / "labeled.parquet", schema.LABELED)
    log.info("read %s (%d pairs); wrote %s", params.data.seed_file, seed.height, paths.data("it0"))


if __name__ == "__main__":
    run_stage(main)
