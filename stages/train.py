"""Stage train@it<k>: fine-tune M(k-1) on the merged set into M(k) (safetensors)."""

import logging

from isara import paths, schema
from isara.cli import iteration_arg, run_stage
from isara.config import load_params
from isara.models import load_model, save_model, set_threads
from isara.train import train

log = logging.getLogger("train")


def main() -> None:
    k = iteration_arg(__doc__)
    params = load_params()
    prev = paths.prev_of(params, k)
    data = schema.read(paths.data(k) / "train.parquet", schema.TRAIN)
    set_threads(params.model.threads)
    model, tok = load_model(paths.model(prev), params.model.trust_remote_code)
    model, history = train(model, tok, data, params.train, k, params.seed, params.model.chat_format)
    save_model(model, tok, paths.model(k))
    paths.write_csv(paths.metrics(k) / "train_loss.csv", history)
    losses = [h["loss"] for h in history]
    stats = {"steps": len(history), "loss_first": losses[0], "loss_last": losses[-1],
             "loss_mean_last_epoch": sum(losses[-len(losses) // params.train.epochs:]) / max(1, len(losses) // params.train.epochs)}
    paths.write_json(paths.metrics(k) / "train.json", stats)
    log.info("trained it%d from it%d: %d steps, loss %.3f -> %.3f", k, prev, len(history), losses[0], losses[-1])


if __name__ == "__main__":
    run_stage(main)
