"""Stage winrate: every model's win rate against the pretrained model's answers to AlpacaEval instructions."""

import logging
from pathlib import Path

from isara import paths, schema
from isara.config import load_params
from isara.models import set_threads
from isara.stage import run_stage
from isara.winrate import Preference, compare, judge_accuracy

log = logging.getLogger("winrate")


def main() -> None:
    params = load_params()
    set_threads(params.model.threads)
    generations = {f.stem: schema.read(f, schema.GENERATIONS) for f in sorted(paths.EVAL_DATA.glob("*.parquet"))}
    judge = Preference(params.judge.preference, params.model.embedder, params.model.trust_remote_code)
    evals = schema.read(params.data.eval_file, schema.EVAL_PROMPTS)
    margin = params.judge.tie_margin
    measured = judge_accuracy(
        judge, Path(params.data.raw_dir), evals, params.judge.max_test_per_source, params.seed, margin
    )
    rates, decisions = compare(generations, evals, judge, margin)
    schema.write(decisions, Path("data/winrate.parquet"), schema.WINRATE)
    for name, r in rates.items():
        log.info("%s vs pretrained: win rate %.3f [%.3f, %.3f] (%d-%d-%d)",
                 name, r["rate"], *r["ci95"], r["wins"], r["ties"], r["losses"])  # fmt: skip
    summary = {"against": "pretrained", "judge": judge.describe(), "judge_accuracy": measured, "tie_margin": margin}
    paths.write_json(Path("metrics/winrate.json"), {**summary, "models": rates})


if __name__ == "__main__":
    run_stage(main)
