"""Stage judge: train the harm and refusal judges and measure them on held-out data."""

import json
import logging
from pathlib import Path

from isara.cli import run_stage
from isara.config import load_params
from isara.judges import train_judges
from isara.models import set_threads

log = logging.getLogger("judge")

OUT_DIR = Path("models/judges")
METRICS = Path("metrics/judge.json")


def main() -> None:
    params = load_params()
    set_threads(params.model.threads)
    raw, split = Path(params.data.raw_dir), Path(params.data.prepared_dir) / "xstest_split.parquet"
    # No prompt the models are evaluated on may train a judge.
    log.info("reading %s, %s, %s", raw, split, params.data.eval_file)
    metrics = train_judges(params, raw, split, Path(params.data.eval_file), OUT_DIR)
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    for which in ("harm", "refusal"):
        for test, m in metrics[which]["held_out"].items():
            base = metrics[which]["keyword_baseline"][test]
            log.info("%s judge on %s: accuracy %.3f F1 %.3f (keywords: %.3f / %.3f, n=%d)",
                     which, test, m["accuracy"], m["f1"], base["accuracy"], base["f1"], m["n"])  # fmt: skip
    log.info("wrote %s and %s", OUT_DIR, METRICS)


if __name__ == "__main__":
    run_stage(main)
