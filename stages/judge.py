"""Stage judge: train the harm and refusal judges and measure them on held-out data."""

import logging
from pathlib import Path

from isara import paths
from isara.config import load_params
from isara.judges import train_judges
from isara.models import set_threads
from isara.prepare_data import SPLIT_SEED
from isara.stage import run_stage

log = logging.getLogger("judge")


def main() -> None:
    params = load_params()
    set_threads(params.model.threads)
    prepared = Path(params.data.prepared_dir)
    raw, split = Path(params.data.raw_dir), prepared / "xstest_split.parquet"
    # No prompt the models are evaluated on may train a judge, and no seed question of any domain:
    # a judge that learnt the seed's answers as "safe" would favour models that copy the seed's style.
    seeds = sorted({*prepared.glob("seed_*.parquet"), Path(params.data.seed_file)})
    log.info("reading %s, %s, %s; excluding the questions of %s", raw, split, params.data.eval_file,
             ", ".join(str(f) for f in seeds))  # fmt: skip
    metrics = train_judges(
        raw,
        split,
        Path(params.data.eval_file),
        paths.JUDGES,
        harm=params.judge.harm,
        refusal=params.judge.refusal,
        sources=params.judge.sources,
        max_train_per_source=params.judge.max_train_per_source,
        max_test_per_source=params.judge.max_test_per_source,
        threshold=params.judge.threshold,
        embedder=params.model.embedder,
        seed=SPLIT_SEED,  # one judge for every `seed` of a study
        seed_files=seeds,
    )
    paths.write_json(Path("metrics/judge.json"), metrics)
    for which in ("harm", "refusal"):
        for test, m in metrics[which]["held_out"].items():
            base = metrics[which]["keyword_baseline"][test]
            log.info("%s judge on %s: accuracy %.3f F1 %.3f (keywords: %.3f / %.3f, n=%d)",
                     which, test, m["accuracy"], m["f1"], base["accuracy"], base["f1"], m["n"])  # fmt: skip
    log.info("wrote %s and metrics/judge.json", paths.JUDGES)


if __name__ == "__main__":
    run_stage(main)
