"""Stage train@<run>: fine-tune M(k-1) on the merged set into M(k) (safetensors)."""

import logging

from isara import paths, schema
from isara.config import load_params
from isara.distributed import end_launched, relaunch
from isara.stage import run_arg, run_stage
from isara.train import fit

log = logging.getLogger("train")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    it, prev = paths.spec(params.iterations, run)
    relaunch(params.train)  # train.processes > 1: this stage again, under accelerate
    data = schema.read(paths.data(run) / "train.parquet", schema.TRAIN)
    stats = fit(
        params.train,
        paths.model(prev),
        data,
        it.k,
        paths.model(run),
        paths.metrics(run),
        seed=params.seed,
        fmt=params.model.chat_format,
        device=params.model.device,
        threads=params.model.threads,
        trust_remote_code=params.model.trust_remote_code,
    )
    log.info("trained %s from %s: %d steps, loss %.3f -> %.3f",
             run, prev, stats["steps"], stats["loss_first"], stats["loss_last"])  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
    end_launched()  # a training process accelerate started ends here (isara/distributed.py: Group.close)
