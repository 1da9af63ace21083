"""Stage sft: the paper's SFT baseline, M0 fine-tuned on the seed D0 alone (as iteration 1)."""

import logging

from isara import paths, schema
from isara.config import load_params
from isara.distributed import end_launched, relaunch
from isara.merge import training_rows
from isara.stage import run_stage
from isara.train import fit

log = logging.getLogger("sft")


def main() -> None:
    params = load_params()
    relaunch(params.train)  # train.processes > 1: this stage again, under accelerate
    seed = schema.read(params.data.seed_file, schema.SEED)
    stats = fit(
        params.train,
        paths.model(paths.BASE),
        training_rows(seed),
        1,
        paths.model("sft"),
        paths.metrics("sft"),
        seed=params.seed,
        fmt=params.model.chat_format,
        device=params.model.device,
        threads=params.model.threads,
        trust_remote_code=params.model.trust_remote_code,
    )
    log.info("SFT on %d seed pairs: %d steps, loss %.3f -> %.3f",
             seed.height, stats["steps"], stats["loss_first"], stats["loss_last"])  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
    end_launched()  # a training process accelerate started ends here (isara/distributed.py: Group.close)
