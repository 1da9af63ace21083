"""Stage winrate: every model's win rate against the pretrained model's answers to AlpacaEval instructions."""

import logging
from pathlib import Path

from isara import paths, schema
from isara.cli import run_stage
from isara.config import load_params
from isara.data import norm
from isara.models import set_threads
from isara.winrate import Preference, accuracy, compare, known_pairs

log = logging.getLogger("winrate")

EVAL_DIR = Path("data/eval")
KNOWN_INSTRUCTIONS = 400  # at most; x 3 kinds of known-order pairs measure the judge


def main() -> None:
    params = load_params()
    set_threads(params.model.threads)
    generations = {f.stem: schema.read(f, schema.GENERATIONS) for f in sorted(EVAL_DIR.glob("*.parquet"))}
    judge = Preference(params.judge.preference, params.model.embedder, params.model.trust_remote_code)
    evals = schema.read(params.data.eval_file, schema.EVAL_PROMPTS)
    n_known = min(KNOWN_INSTRUCTIONS, params.judge.max_test_per_source or KNOWN_INSTRUCTIONS)
    pairs = known_pairs(Path(params.data.raw_dir), {norm(p) for p in evals["prompt"]}, n_known, params.seed)
    measured = accuracy(judge, pairs, params.judge.tie_margin)
    log.info("preference judge: %.3f of %d known-order pairs ordered right %s",
             measured["accuracy"], measured["n"], measured["by_pair"])  # fmt: skip
    rates, decisions = compare(generations, evals, judge, params.judge.tie_margin)
    schema.write(decisions, Path("data/winrate.parquet"), schema.WINRATE)
    for name, r in rates.items():
        log.info("%s vs pretrained: win rate %.3f [%.3f, %.3f] (%d-%d-%d)",
                 name, r["rate"], *r["ci95"], r["wins"], r["ties"], r["losses"])  # fmt: skip
    paths.write_json(
        Path("metrics/winrate.json"),
        {
            "against": "pretrained",
            "judge": judge.describe(),
            "judge_accuracy": measured,
            "tie_margin": params.judge.tie_margin,
            "models": rates,
        },
    )


if __name__ == "__main__":
    run_stage(main)
