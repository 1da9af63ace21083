"""Stage merge@<run>: D0 (weight 1) + accepted Dk (weight gamma); the pool grows."""

import logging

from isara import paths, schema
from isara.config import load_params
from isara.merge import merge
from isara.stage import run_arg, run_stage

log = logging.getLogger("merge")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    it, prev = paths.spec(params.iterations, run)
    seed = schema.read(params.data.seed_file, schema.SEED)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    filtered = schema.read(paths.data(run) / "filtered.parquet", schema.FILTERED)
    train, next_pool, ratio = merge(seed, pool, filtered, params.gamma, it.k, run)
    schema.write(train, paths.data(run) / "train.parquet", schema.TRAIN)
    schema.write(next_pool, paths.data(run) / "pool.parquet", schema.POOL)
    stats = {"pool_size": next_pool.height, "train_size": train.height, "data_scaling": ratio}
    paths.write_json(paths.metrics(run) / "merge.json", stats)
    log.info("pool %d -> %d pairs (data scaling x%.2f)", pool.height, next_pool.height, ratio)


if __name__ == "__main__":
    run_stage(main)
