"""Stage evaluate@it<k> / baseline@<name>: a model answers the eval prompts; judges score them."""

import argparse

from isara import backends, evaluate, paths
from isara.config import load_params
from isara.judges import Judges
from isara.models import model_ref, set_threads
from isara.prepare_data import SPLIT_SEED  # the prompts are the data's; every seed of a study meets them
from isara.stage import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True, help="it<k> or a baseline name")
    ap.add_argument("--model", required=True, help="checkpoint folder")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    params = load_params()
    prompts = evaluate.eval_prompts(params.data.eval_file, params.evaluate.max_per_suite, SPLIT_SEED)
    judges = Judges.load(paths.JUDGES, params.model.embedder)  # a broken judge fails before generation
    set_threads(params.model.threads)
    model, tok = backends.load(
        args.model, params.scale, params.model.device, params.model.trust_remote_code, params.model.threads
    )
    ref, fmt = model_ref(args.model), params.model.chat_format
    answers = evaluate.answer(model, tok, prompts, params.evaluate, fmt, params.seed, None, ref)
    evaluate.write(args.name, prompts, answers, judges, params.judge.threshold)


if __name__ == "__main__":
    run_stage(main)
