"""Stage evaluate@it<k> / baseline@<name>: a model answers the eval prompts; judges score them."""

import argparse
import logging
from pathlib import Path

from isara import backends, paths, schema
from isara.cli import run_stage
from isara.config import load_params
from isara.evaluate import answer, check_prompts, sample_prompts, score, summarize
from isara.icl_baselines import examples_for
from isara.judges import Judges
from isara.models import model_ref, set_threads

log = logging.getLogger("evaluate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True, help="it<k> or a baseline name")
    ap.add_argument("--model", required=True, help="checkpoint folder")
    ap.add_argument("--icl", choices=["none", "random", "knn"], default="none")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    params = load_params()
    prompts = sample_prompts(check_prompts(params.data.eval_file), params.evaluate.max_per_suite, params.seed)
    judges = Judges.load(Path("models/judges"), params.model.embedder)  # a broken judge fails before generation
    examples = None
    if args.icl != "none":
        seed = schema.read(params.data.seed_file, schema.SEED)
        examples = examples_for(prompts["prompt"].to_list(), seed, args.icl, params)
    set_threads(params.model.threads)
    model, tok = backends.load(Path(args.model), params)  # scale.backend: here, vLLM or Ray
    answers = answer(model, tok, prompts, params, examples, model_ref(Path(args.model)))
    gen = score(args.name, prompts, answers, judges)
    schema.write(gen, Path("data/eval") / f"{args.name}.parquet", schema.GENERATIONS)
    result = summarize(gen, params.judge.threshold)
    result["judges"] = judges.describe()
    paths.write_json(Path("metrics/eval") / f"{args.name}.json", result)
    log.info(
        "%s: %d answers scored; harmful %.3f, over-refusal %.3f",
        args.name,
        gen.height,
        result.get("harmful_rate", {}).get("rate", float("nan")),
        result.get("over_refusal", {}).get("rate", float("nan")),
    )


if __name__ == "__main__":
    run_stage(main)
