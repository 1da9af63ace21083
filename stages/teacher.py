"""Stage teacher@<run>: the judges' view of the pairs the model labelled for itself, beside the seed's."""

import logging

import polars as pl

from isara import paths, schema, teacher
from isara.config import load_params
from isara.judges import Judges
from isara.models import set_threads
from isara.stage import run_arg, run_stage

log = logging.getLogger("teacher")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    _, prev = paths.spec(params.iterations, run)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    seed = pool.filter(pl.col("origin") == teacher.SEED)
    filtered = schema.read(paths.data(run) / "filtered.parquet", schema.FILTERED)
    cache = schema.read(paths.data(run) / "embeddings.parquet", schema.EMBEDDINGS)
    judges = Judges.load(paths.JUDGES, params.model.embedder)
    set_threads(params.model.threads)
    judged, floor = teacher.judge_pairs(filtered, seed, cache, params.model.embedder, judges)
    stats = teacher.summarize(judged, seed, floor, judges, params.judge.threshold)
    stats["growth"] = teacher.growth(judged, pool.height)
    stats["writer"] = str(paths.model(prev))
    schema.write(judged, teacher.DATA / f"{run}.parquet", teacher.JUDGED)
    schema.write(teacher.examples(judged, pool), teacher.DATA / f"{run}.examples.parquet", teacher.EXAMPLES)
    paths.write_json(teacher.METRICS / f"{run}.json", stats)
    acc, d0 = stats["accepted"], stats["seed"]
    log.info(
        "accepted pairs judged harmful %.1f%% (seed %.1f%%), refusing %.1f%% (seed %.1f%%); %.0f%% off the domain",
        *(100 * acc["harmful_rate"]["rate"], 100 * d0["harmful_rate"]["rate"]),
        *(100 * acc["refusal_rate"]["rate"], 100 * d0["refusal_rate"]["rate"]),
        100 * stats["off_domain"]["rate"],
    )


if __name__ == "__main__":
    run_stage(main)
