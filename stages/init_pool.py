"""Stage init_pool: P0 = D0 (the seed named in params) and the embeddings of its questions.

Also the empty proposals and labels of it0: a run that extends no other run names `extends: it0`,
and reads these as the rows it reuses (none).
"""

import logging

import polars as pl

from isara import embed, paths, schema
from isara.config import load_params
from isara.merge import seed_pool
from isara.seeds import check_seed
from isara.stage import run_stage

log = logging.getLogger("init_pool")


def main() -> None:
    params = load_params()
    seed = schema.read(params.data.seed_file, schema.SEED)
    check_seed(seed, params.contexts, params.data.max_seed_rows, params.data.seed_file)
    pool = seed_pool(seed)
    cache, _ = embed.embed_new(embed.empty_cache(), pool["question"].to_list(), params.model.embedder)
    base = paths.data(paths.BASE)
    schema.write(pool, base / "pool.parquet", schema.POOL)
    schema.write(cache, base / "embeddings.parquet", schema.EMBEDDINGS)
    schema.write(pl.DataFrame(schema=schema.PROPOSED), base / "proposed.parquet", schema.PROPOSED)
    schema.write(pl.DataFrame(schema=schema.LABELED), base / "labeled.parquet", schema.LABELED)
    log.info("read %s (%d pairs); wrote %s", params.data.seed_file, seed.height, base)


if __name__ == "__main__":
    run_stage(main)
