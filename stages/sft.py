"""Stage sft: the paper's SFT baseline, M0 fine-tuned on the seed D0 alone (as iteration 1)."""

import logging
from pathlib import Path

import polars as pl

from isara import paths, schema
from isara.cli import run_stage
from isara.config import load_params
from isara.distributed import relaunch
from isara.merge import seed_pool
from isara.train import fit

log = logging.getLogger("sft")


def main() -> None:
    params = load_params()
    relaunch(params.train)  # train.processes > 1: this stage again, under accelerate
    seed = schema.read(params.data.seed_file, schema.SEED)
    data = seed_pool(seed).with_columns(pl.lit(1.0).alias("weight"))
    stats = fit(params, paths.model("it0"), data, 1, Path("models/sft"), Path("metrics/sft"))
    log.info(
        "SFT on %d seed pairs: %d steps, loss %.3f -> %.3f",
        seed.height,
        stats["steps"],
        stats["loss_first"],
        stats["loss_last"],
    )


if __name__ == "__main__":
    run_stage(main)
