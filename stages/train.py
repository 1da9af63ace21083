"""Stage train@it<k>: fine-tune M(k-1) on the merged set into M(k) (safetensors)."""

import logging

from isara import paths, schema
from isara.cli import iteration_arg, run_stage
from isara.config import load_params
from isara.train import run

log = logging.getLogger("train")


def main() -> None:
    k = iteration_arg(__doc__)
    params = load_params()
    prev = paths.prev_of(params, k)
    data = schema.read(paths.data(k) / "train.parquet", schema.TRAIN)
    stats = run(params, paths.model(prev), data, k, paths.model(k), paths.metrics(k))
    log.info("trained it%d from it%d: %d steps, loss %.3f -> %.3f", k, prev, stats["steps"],
             stats["loss_first"], stats["loss_last"])


if __name__ == "__main__":
    run_stage(main)
