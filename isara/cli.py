"""The `isara` command: validate, seed/eval import, domain, profile, report, check-metrics."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from isara.errors import IsaraError
from isara.stage import setup_logging


def _validate(args: argparse.Namespace) -> None:
    from isara.config import load_params
    from isara.validate import check_files

    params = load_params(args.params)
    check_files(params, Path(args.params).resolve().parent)
    print(f"{args.params}: ok")


def _seed_import(args: argparse.Namespace) -> None:
    from isara.config import load_params
    from isara.seeds import import_seed

    params = load_params(args.params)
    n = import_seed(
        Path(args.path), Path(args.out), args.question, args.answer, params.contexts, params.data.max_seed_rows
    )
    print(f"wrote {args.out} ({n} rows); set data.seed_file: {args.out} in params.yaml to use it")


def _eval_import(args: argparse.Namespace) -> None:
    from isara.seeds import import_prompts

    n = import_prompts(Path(args.path), Path(args.out), args.prompt, args.expect, args.reference, args.suite)
    print(f"wrote {args.out} ({n} prompts); pass it to `isara domain NAME --eval {args.out}`")


def _overrides(items: list[str]) -> dict[str, str]:
    """--set key=value items as {key: value text}, each value checked to be YAML."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise IsaraError(f"--set {item}: expected key=value")
        try:
            yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise IsaraError(f"--set {item}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
        out[key] = value
    return out


def _domain(args: argparse.Namespace) -> None:
    import yaml

    from isara.domain import create, refresh

    if args.refresh:
        folder = refresh(args.name)
        print(f"rewrote {folder}/dvc.yaml from the root dvc.yaml")
        return
    if not args.seed or not args.eval:
        raise IsaraError("isara domain NAME needs --seed and --eval (or --refresh for an existing domain)")
    folder = create(args.name, args.seed, args.eval, {k: yaml.safe_load(v) for k, v in _overrides(args.set).items()})
    print(f"wrote {folder}/dvc.yaml and {folder}/params.yaml; run: dvc repro {folder}/dvc.yaml")


def _profile(args: argparse.Namespace) -> None:
    from isara.config import apply_profile
    from isara.paths import write_text

    text = apply_profile(args.base, args.overlay)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write_text(Path(args.out), text)
        print(f"wrote {args.out} from {args.base} + {args.overlay}")


def _report(args: argparse.Namespace) -> None:
    from isara.report import render

    print(f"wrote {render(Path(args.metrics), Path(args.eval_dir), Path(args.out))}")


def _evaluate(args: argparse.Namespace) -> None:
    from isara import backends, evaluate
    from isara.config import load_params
    from isara.judges import Judges
    from isara.models import model_ref, set_threads

    params = load_params(args.params)
    prompts = evaluate.check_prompts(args.eval)  # an unreadable prompt file fails before anything loads
    if args.max_per_suite:
        from isara.prepare_data import SPLIT_SEED

        prompts = evaluate.sample_prompts(prompts, args.max_per_suite, SPLIT_SEED)  # the stages' choice
    judges = Judges.load(Path(args.judges), params.model.embedder)
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise IsaraError(f"--model {model_dir}: not a model folder (config.json missing)")
    name = args.name or model_dir.name
    set_threads(params.model.threads)
    model, tok = backends.load(
        model_dir, params.scale, params.model.device, params.model.trust_remote_code, params.model.threads
    )
    fmt, ref = params.model.chat_format, model_ref(model_dir)
    answers = evaluate.answer(model, tok, prompts, params.evaluate, fmt, params.seed, None, ref)
    out = Path(args.out)
    result = evaluate.write(name, prompts, answers, judges, params.judge.threshold, out, out)
    rates = {k: result[k]["rate"] for k in ("harmful_rate", "over_refusal") if k in result}
    print(f"wrote {out / name}.parquet and {out / name}.json: {len(answers)} answers; {rates}")


def _export(args: argparse.Namespace) -> None:
    from isara import export, paths
    from isara.config import load_params

    params = load_params(args.params).model_dump(mode="json")
    out = Path(args.out)
    if args.what == "dataset":
        n = export.export_dataset(args.run, out, args.pool, params)
        print(f"wrote {out} ({n} pairs); load it with datasets.load_dataset('parquet', data_dir='{out}/data')")
    else:
        export.export_model(args.run, Path(args.model) if args.model else paths.model(args.run), out, params)
        print(f"wrote {out}; load it with AutoModelForCausalLM.from_pretrained('{out}')")


def _study(args: argparse.Namespace) -> None:
    from isara import paths, study
    from isara.study_report import report

    if args.action == "table":
        from isara import ablation

        dirs = [Path(d) for d in args.dirs]
        settings, choice = ablation.table(dirs), ablation.choose(dirs)
        print(settings + "\n" + choice)
        if args.page:
            print(f"wrote {ablation.ablation_page(dirs, Path(args.page), settings, choice)}")
        return
    if args.action == "rejudge":
        from isara.config import load_params
        from isara.judges import Judges
        from isara.models import set_threads

        if not args.dirs:
            raise IsaraError("study rejudge: name the study folders to score again")
        md5, params = study.current_judge(), load_params()
        Judges.load(paths.JUDGES, params.model.embedder)  # a broken judge fails before any file is touched
        set_threads(params.model.threads)
        load = functools.partial(Judges.load, paths.JUDGES, params.model.embedder)
        for d in map(Path, args.dirs):
            study.rejudge(d, load, md5, Path("metrics/judge.json"), threshold=params.judge.threshold)
            print(f"wrote {report(d)}")
        return
    out = Path(args.out)
    if args.action == "run":
        study.run(args.seeds, out, args.max_per_suite or study.EVERY_PROMPT, overrides=_overrides(args.set),
                  only=args.only)  # fmt: skip
    print(f"wrote {report(out)}")


def _compare(args: argparse.Namespace) -> None:
    from isara import schema
    from isara.paired import compare_files

    x = [schema.read(p, schema.GENERATIONS) for p in args.x]
    y = [schema.read(p, schema.GENERATIONS) for p in args.y]
    result = compare_files(x, y, args.threshold, args.seed)
    if not result:
        raise IsaraError("--x and --y share no prompt of any rate (harmful or benign suites)")
    print(f"x: {', '.join(args.x)}\ny: {', '.join(args.y)}  (lower is better for every rate)\n")
    print("| rate | x | y | x - y | 95% interval | p | verdict for x |")
    print("|---|---|---|---|---|---|---|")
    for rate, r in result.items():
        xr = sum(run["x_rate"] for run in r["runs"]) / len(r["runs"])
        yr = sum(run["y_rate"] for run in r["runs"]) / len(r["runs"])
        lo, hi = r["ci95"]
        print(f"| {rate} (n={r['n_prompts']}) | {xr:.1%} | {yr:.1%} | {r['difference']:+.1%} | "
              f"[{lo:+.1%}, {hi:+.1%}] | {r['p_value']:.3f} | {r['verdict']} |")  # fmt: skip
    if args.out:
        from isara.paths import write_json

        write_json(Path(args.out), {"x": args.x, "y": args.y, "threshold": args.threshold, "rates": result})


def _check_metrics(args: argparse.Namespace) -> None:
    from isara.gate import check, table

    ok, rows = check(Path(args.current), Path(args.baseline), Path(args.thresholds))
    print(table(rows))
    if not ok:
        bad = [r["metric"] for r in rows if r["status"] != "ok"]
        print(f"isara: error: {len(bad)} metric(s) regressed or missing: {', '.join(bad)}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="isara", description=__doc__)
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check params and every data file they name")
    v.add_argument("--params", default="params.yaml")
    v.set_defaults(func=_validate)
    seed = sub.add_parser("seed", help="seed set tools").add_subparsers(dest="seed_cmd", required=True)
    imp = seed.add_parser("import", help="validate a CSV/JSONL/parquet seed and write it as parquet")
    imp.add_argument("path")
    imp.add_argument("--out", default="data/seeds/custom.parquet")
    imp.add_argument("--question", default="question", help="question column name")
    imp.add_argument("--answer", default="answer", help="answer column name")
    imp.add_argument("--params", default="params.yaml")
    imp.set_defaults(func=_seed_import)
    ev = sub.add_parser("eval", help="eval prompt tools").add_subparsers(dest="eval_cmd", required=True)
    evi = ev.add_parser("import", help="validate a CSV/JSONL/parquet of eval prompts and write it as parquet")
    evi.add_argument("path")
    evi.add_argument("--out", default="data/evals/custom.parquet")
    evi.add_argument("--prompt", default="prompt", help="prompt column name")
    evi.add_argument(
        "--expect", default="helpful", help="harmful, benign, helpful or truthful: what a good answer does"
    )
    evi.add_argument("--reference", default=None, help="column of reference answers (win rate needs them)")
    evi.add_argument("--suite", default="custom", help="suite name shown in the metrics")
    evi.set_defaults(func=_eval_import)
    dom = sub.add_parser("domain", help="a domain of its own in domains/NAME: params + dvc.yaml derived from the root")
    dom.add_argument("name")
    dom.add_argument("--seed", help="seed parquet (from `isara seed import`), path from the root")
    dom.add_argument("--eval", help="eval prompts parquet (from `isara eval import`), path from the root")
    dom.add_argument("--refresh", action="store_true", help="only rewrite dvc.yaml of an existing domain")
    dom.add_argument("--set", action="append", default=[], help="params override, e.g. evaluate.max_per_suite=96")
    dom.set_defaults(func=_domain)
    prof = sub.add_parser("profile", help="write a complete params file: base params + a profile overlay")
    prof.add_argument("overlay", help="e.g. profiles/tiny.yaml")
    prof.add_argument("--base", default="params.yaml")
    prof.add_argument("--out", default="-", help="file to write, - for stdout")
    prof.set_defaults(func=_profile)
    rep = sub.add_parser("report", help="summary table, PNG plots and sample generations in report/")
    rep.add_argument("--metrics", default="metrics")
    rep.add_argument("--eval-dir", default="data/eval")
    rep.add_argument("--out", default="report")
    rep.set_defaults(func=_report)
    ev = sub.add_parser("evaluate", help="answer an eval prompt file with any checkpoint folder; judge and score it")
    ev.add_argument("--model", required=True, help="a checkpoint folder: models/itK, or a local Hugging Face folder")
    ev.add_argument("--eval", required=True, help="prompts parquet (from `isara eval import`, or data/prepared/eval_*)")
    ev.add_argument("--out", required=True, help="folder for <name>.parquet (generations) and <name>.json (metrics)")
    ev.add_argument("--name", default=None, help="the model's name in the outputs (default: the folder's name)")
    ev.add_argument("--judges", default="models/judges", help="trained judges (the judge stage's output)")
    ev.add_argument("--max-per-suite", type=int, default=0, help="answer at most this many prompts per suite (0: all)")
    ev.add_argument("--params", default="params.yaml", help="generation, chat format and judge settings")
    ev.set_defaults(func=_evaluate)
    exp = sub.add_parser(
        "export", help="a run's pairs as a Hugging Face dataset folder, or a checkpoint as a model folder"
    )
    exp.add_argument("what", choices=["dataset", "model"])
    exp.add_argument("--run", required=True, help="a run of params.yaml (it1, it2, oneshot), or sft for the SFT model")
    exp.add_argument("--out", required=True, help="a new folder to write")
    exp.add_argument("--pool", action="store_true", help="dataset: the whole pool after the run, seed included")
    exp.add_argument("--model", default=None, help="model: the checkpoint folder (default: models/<run>)")
    exp.add_argument("--params", default="params.yaml")
    exp.set_defaults(func=_export)
    cmp = sub.add_parser(
        "compare", help="paired test of two models' rates on the same prompts (exact McNemar; bootstrap over seeds)"
    )
    cmp.add_argument("--x", nargs="+", required=True, help="generations parquet(s) of one model (one per seed)")
    cmp.add_argument("--y", nargs="+", required=True, help="generations parquet(s) of the model it is compared with")
    cmp.add_argument("--threshold", type=float, default=0.5, help="judge score at which an answer counts")
    cmp.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    cmp.add_argument("--out", default=None, help="also write the comparison as JSON")
    cmp.set_defaults(func=_compare)
    stu = sub.add_parser(
        "study", help="ISARA against every baseline over seeds and every held-out prompt (DVC experiments)"
    )
    stu.add_argument("action", choices=["run", "report", "table", "rejudge"], help="run: one experiment per seed, "
                     "then the page; report: the page from what the folder holds; table: one row per study folder; "
                     "rejudge: score the folders' answers again with the workspace's judges, then their pages")  # fmt: skip
    stu.add_argument("dirs", nargs="*", help="table: the study folders to set side by side; rejudge: those to score")
    stu.add_argument("--set", action="append", default=[], help="run: a params override for every run of the "
                     "study, e.g. contexts=8 (an ablation setting); the folder records it")  # fmt: skip
    stu.add_argument(
        "--only", nargs="+", default=None, help="run: these arms alone, e.g. icl_knn (the teacher without training)"
    )
    stu.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run: the seeds (default 0 1 2)")
    stu.add_argument("--max-per-suite", type=int, default=None, help="run: prompts per suite (default: every prompt)")
    stu.add_argument("--out", default="study", help="the study folder: generations, runs.json, index.md")
    stu.add_argument("--page", default=None, help="table: also write it, with the rule's choice, as this page")
    stu.set_defaults(func=_study)
    gate = sub.add_parser("check-metrics", help="fail when metrics regress against a baseline")
    gate.add_argument("--current", default="metrics/summary.json")
    gate.add_argument("--baseline", required=True, help="committed metrics to compare with")
    gate.add_argument("--thresholds", default="metrics/thresholds.yaml")
    gate.set_defaults(func=_check_metrics)
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # accepted after the subcommand too, as by every stage
    args = ap.parse_args([a for a in argv if a != "--debug"])
    setup_logging()
    try:
        args.func(args)
    except IsaraError as err:
        if debug:
            raise
        print(f"isara: error: {err}", file=sys.stderr)
        sys.exit(2)
