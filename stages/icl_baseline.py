"""Stage icl_baseline@<name>: M0 answers the eval prompts with D0 pairs in the prompt (random or nearest)."""

import argparse

from isara import backends, evaluate, paths, schema
from isara.config import load_params
from isara.icl_baseline import examples_for
from isara.judges import Judges
from isara.models import model_ref, set_threads
from isara.prepare_data import SPLIT_SEED  # the prompts are the data's; every seed of a study meets them
from isara.stage import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True, help="the baseline's name, e.g. icl_knn")
    ap.add_argument("--how", required=True, choices=["random", "knn"], help="how the D0 pairs are chosen")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    params = load_params()
    prompts = evaluate.eval_prompts(params.data.eval_file, params.evaluate.max_per_suite, SPLIT_SEED)
    judges = Judges.load(paths.JUDGES, params.model.embedder)  # a broken judge fails before generation
    seed = schema.read(params.data.seed_file, schema.SEED)
    questions = prompts["prompt"].to_list()
    examples = examples_for(questions, seed, args.how, params.contexts, params.seed, params.model.embedder)
    set_threads(params.model.threads)
    base = paths.model(paths.BASE)
    model, tok = backends.load(
        base, params.scale, params.model.device, params.model.trust_remote_code, params.model.threads
    )
    ref, fmt = model_ref(base), params.model.chat_format
    answers = evaluate.answer(model, tok, prompts, params.evaluate, fmt, params.seed, examples, ref)
    evaluate.write(args.name, prompts, answers, judges, params.judge.threshold)


if __name__ == "__main__":
    run_stage(main)
