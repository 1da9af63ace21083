"""Stage sft_matched@<round>: D0 alone on ISARA's schedule, the control that separates data from schedule.

Round k continues round k-1's control (the base model for k=1) with ISARA's learning rate for
round k and as many optimizer steps as train@<round> takes on its own training set.
"""

import logging

from isara import paths, schema
from isara.config import load_params
from isara.distributed import end_launched, relaunch
from isara.errors import IsaraError
from isara.merge import training_rows
from isara.models import load_tokenizer
from isara.stage import run_arg, run_stage
from isara.train import fit, planned_steps

log = logging.getLogger("sft_matched")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    it, _ = paths.spec(params.iterations, run)
    init = paths.isara_rounds(params.iterations).get(run)
    if init is None:
        raise IsaraError(
            f"--run {run}: not an ISARA round (an it<k> that extends it0 at scale 1, whose prev is a round or 0)"
        )
    relaunch(params.train)  # train.processes > 1: this stage again, under accelerate
    seed = schema.read(params.data.seed_file, schema.SEED)
    isara_rows = schema.read(paths.data(run) / "train.parquet", schema.TRAIN)
    tok = load_tokenizer(init, params.model.trust_remote_code)
    steps = planned_steps(tok, isara_rows, params.train, params.model.chat_format)
    stats = fit(
        params.train,
        init,
        training_rows(seed),
        it.k,
        paths.model(f"{paths.MATCHED}/{run}"),
        paths.metrics(f"{paths.MATCHED}/{run}"),
        seed=params.seed,
        fmt=params.model.chat_format,
        device=params.model.device,
        threads=params.model.threads,
        trust_remote_code=params.model.trust_remote_code,
        steps=steps,
    )
    log.info("D0 (%d pairs) on the schedule of %s (%d rows): %d steps, loss %.3f -> %.3f",
             seed.height, run, isara_rows.height, stats["steps"], stats["loss_first"], stats["loss_last"])  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
    end_launched()  # a training process accelerate started ends here (isara/distributed.py: Group.close)
