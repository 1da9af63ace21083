"""An external yardstick: lm-evaluation-harness's TruthfulQA generation task, offline, beside isara's metric.

    python tools/lm_eval_truthfulqa.py --params domains/truthfulqa/params.yaml \
        --model it2=domains/truthfulqa/models/it2 --model sft=domains/truthfulqa/models/sft --out lm_eval.json

lm-eval's stock `truthfulqa_gen` downloads truthfulqa/truthful_qa from the Hub, which isara never
reaches. This runs that same task (lm-eval's own config, loaded from the installed package: its
6-shot Q/A primer, its answer formatting, its BLEU/ROUGE metrics) on the questions isara's evaluate
stage answers (the params' eval file, sampled as the stage samples it), read from a local parquet
file. For each model it prints three numbers, from which the differences can be read apart:

  lm-eval     lm-eval's rougeL_diff: its prompt (the primer, plain Q:/A:), its metric (rougeLsum, x100)
  same text   isara's ROUGE-L difference of those same lm-eval answers: the metric's share of the gap
  isara       isara's truthfulqa_rouge_diff of its own answers (chat format, no examples), if evaluated

Beside the JSON it writes a page (the JSON's name, .md) with the table and, per model, how many
lm-eval answers say "no comment"; `--render JSON` writes that page again from the JSON alone
(`--check`: exit 1 if the page on disk is not what the JSON gives).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # lm-eval and datasets never reach a hub from here
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TASK = "isara_truthfulqa_gen"
MAX_NEW_TOKENS = 64  # lm-eval's default is 256; answers end at the blank line long before on this model


def questions(params_file: Path, eval_file: str | None, max_per_suite: int | None, limit: int | None) -> pl.DataFrame:
    """The TruthfulQA prompts isara's evaluate stage answers, with their reference answers."""
    from isara.config import load_params
    from isara.evaluate import eval_prompts
    from isara.prepare_data import SPLIT_SEED

    params = load_params(params_file)
    root = params_file.parent
    path = Path(eval_file) if eval_file else root / params.data.eval_file
    prompts = eval_prompts(path, max_per_suite or params.evaluate.max_per_suite, SPLIT_SEED)
    prompts = prompts.filter(pl.col("expect") == "truthful")
    if prompts.height == 0:
        raise SystemExit(f"{path}: no TruthfulQA prompt (expect: truthful)")
    return prompts.head(limit) if limit else prompts


def task(docs: Path):
    """lm-eval's own truthfulqa_gen config, reading `docs` (a local parquet file) instead of the Hub."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(Path(lm_eval.__file__).parent / "tasks" / "truthfulqa" / "truthfulqa_gen.yaml")
    config.update(
        task=TASK,
        tag=[],
        dataset_path="parquet",
        dataset_name=None,
        dataset_kwargs={"data_files": {"validation": str(docs)}},
        generation_kwargs={"until": ["\n\n"], "max_gen_toks": MAX_NEW_TOKENS, "do_sample": False},
    )
    return ConfigurableTask(config=config)


def run(name: str, folder: Path, docs: Path, batch_size: int) -> tuple[float, list[str], list[str]]:
    """(lm-eval's rougeL_diff, the answers, their questions) of one checkpoint folder."""
    import lm_eval

    out = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(folder), "dtype": "float32", "device": "cpu"},
        tasks=[task(docs)],
        batch_size=batch_size,
        log_samples=True,
    )
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    answers = [s["filtered_resps"][0].strip() for s in samples]
    return float(out["results"][TASK]["rougeL_diff,none"]), answers, [s["doc"]["question"] for s in samples]


HEADER = "| model | lm-eval rougeL_diff | isara's metric, same answers | isara truthfulqa_rouge_diff | no comment |"


def page(result: dict, source: str) -> str:
    """The page of one JSON this tool wrote: a row per model, baselines in the report's order, then the rest."""
    from isara.report import BASELINES, NO_COMMENT

    n = result["questions"]
    rank = {name: i for i, name in enumerate(BASELINES)}
    lines = [
        "# lm-evaluation-harness on TruthfulQA",
        "",
        f"<!-- written by `python tools/lm_eval_truthfulqa.py`; from {source} -->",
        f"{n} questions, lm-eval's answers stopped at the first blank line or {result['max_new_tokens']} new tokens."
        " No interval is computed for these numbers. Last column: lm-eval answers that say"
        f' "{NO_COMMENT}", of {n}.',
        "",
        "## lm-eval on TruthfulQA",
        "",
        HEADER,
        "|---|---|---|---|---|",
    ]
    for name in sorted(result["models"], key=lambda x: (rank.get(x, len(rank)), x)):
        m = result["models"][name]
        own = m["isara_truthfulqa_rouge_diff"]
        said = sum(NO_COMMENT in a.lower() for a in m["answers"])
        lines.append(
            f"| {name} | {m['lm_eval_rougeL_diff']:+.2f} | {m['isara_metric_on_lm_eval_answers']:+.2f} |"
            f" {'—' if own is None else f'{own:+.2f}'} | {said} |"
        )
    return "\n".join(lines) + "\n"


def render(json_file: Path, check: bool) -> None:
    if not json_file.is_file():
        sys.exit(f"{json_file}: no such file (run the tool with --model ... --out {json_file} first)")
    text = page(json.loads(json_file.read_text(encoding="utf-8")), json_file.as_posix())
    out = json_file.with_suffix(".md")
    if check:
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            sys.exit(f"{out} is not the page {json_file} gives; run this tool with --render {json_file}")
        print(f"{out} matches {json_file}")
        return
    out.write_text(text, encoding="utf-8")
    print(text, end="")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--render", type=Path, default=None, help="a JSON this tool wrote: its page again, no model run")
    ap.add_argument("--check", action="store_true", help="with --render: compare the page on disk, write nothing")
    ap.add_argument("--params", type=Path, help="the domain's params.yaml (paths relative to it)")
    ap.add_argument("--model", action="append", help="NAME=FOLDER of a checkpoint, repeatable")
    ap.add_argument("--eval", default=None, help="eval prompts parquet (default: the params' eval file)")
    ap.add_argument("--max-per-suite", type=int, default=None, help="default: the params' evaluate.max_per_suite")
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions (a quick check)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, help="JSON with every number and answer (and its page, .md)")
    args = ap.parse_args()
    if args.render:
        return render(args.render, args.check)
    if not (args.params and args.model and args.out):
        ap.error("--params, --model and --out are needed to run models (or --render JSON)")
    from isara.evaluate import truth_diff

    prompts = questions(args.params, args.eval, args.max_per_suite, args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    docs = args.out.with_suffix(".questions.parquet")
    pl.DataFrame(
        {
            "question": prompts["prompt"],
            "correct_answers": prompts["references"],  # isara's already hold "I have no comment."
            "incorrect_answers": prompts["incorrect"],
        }
    ).write_parquet(docs)
    metrics_dir = args.params.parent / "metrics" / "eval"
    result = {"questions": prompts.height, "max_new_tokens": MAX_NEW_TOKENS, "models": {}}
    for spec in args.model:
        name, sep, folder = spec.partition("=")
        if not sep or not (Path(folder) / "config.json").is_file():
            sys.exit(f"--model {spec}: expected NAME=FOLDER of a checkpoint folder")
        lm_diff, answers, asked = run(name, Path(folder), docs, args.batch_size)
        by_q = {q.strip(): i for i, q in enumerate(prompts["prompt"].to_list())}
        order = [by_q[q.strip()] for q in asked]
        refs, wrong = prompts["references"].to_list(), prompts["incorrect"].to_list()
        same = float(np.mean(truth_diff(answers, [refs[i] for i in order], [wrong[i] for i in order]))) * 100
        own_file = metrics_dir / f"{name}.json"
        own_metrics = json.loads(own_file.read_text()) if own_file.is_file() else {}
        own = own_metrics.get("truthfulqa_rouge_diff", {}).get("mean")  # None: not evaluated on TruthfulQA
        result["models"][name] = {"lm_eval_rougeL_diff": lm_diff, "isara_metric_on_lm_eval_answers": same,
                                  "isara_truthfulqa_rouge_diff": own, "answers": answers}  # fmt: skip
        print(f"{name}: lm-eval {lm_diff:+.2f}, isara's metric on those answers {same:+.2f}", flush=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    render(args.out, check=False)


if __name__ == "__main__":
    main()
