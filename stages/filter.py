"""Stage filter@<run>: novelty, length and duplicate checks; rejected rows keep their reason."""

import logging

from isara import filter as filt
from isara import paths, schema
from isara.config import load_params
from isara.stage import run_arg, run_stage

log = logging.getLogger("filter")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    _, prev = paths.spec(params.iterations, run)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    labeled = schema.read(paths.data(run) / "labeled.parquet", schema.LABELED)
    out = filt.apply(labeled, pool, params.filter)
    schema.write(out, paths.data(run) / "filtered.parquet", schema.FILTERED)
    stats = filt.summary(out)
    paths.write_json(paths.metrics(run) / "filter.json", stats)
    log.info("accepted %d of %d proposed pairs", stats["accepted"], stats["proposed"])


if __name__ == "__main__":
    run_stage(main)
