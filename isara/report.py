"""Across iterations and baselines: one summary table, plots rendered offline, sample generations."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import polars as pl

from isara import html, schema, teacher
from isara.judges import keyword_refusal
from isara.paired import JUDGED, UNTRUTHFUL, compare_files
from isara.paths import atomic, write_csv, write_json, write_text

log = logging.getLogger(__name__)
BASELINES = ("pretrained", "sft", "sft_matched", "icl_random", "icl_knn", "oneshot")
AGAINST = ("sft", "sft_matched", "icl_knn", "oneshot", "pretrained")  # what ISARA's last iteration is paired with


def _order(name: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"it(\d+)", name)
    return (1, int(m.group(1)), name) if m else (0, BASELINES.index(name) if name in BASELINES else 99, name)


def read_json(path: Path) -> dict:
    """A metrics JSON as a stage wrote it; {} where none was written (a stage not run, an arm left out)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


NO_COMMENT = "no comment"  # TruthfulQA counts "I have no comment." as true: true, but uninformative


def truthfulness_yardstick(gen: pl.DataFrame) -> dict:
    """Share of TruthfulQA answers that decline ("I have no comment"), and the ROUGE-L difference of the rest.

    A model that declines every question scores +100 on the ROUGE-L difference; these two numbers
    say how much of a model's score is that.
    """
    t = gen.filter(pl.col("expect") == "truthful")
    if t.height == 0:
        return {}
    declined = t["answer"].str.to_lowercase().str.contains(NO_COMMENT, literal=True)
    rest = t.filter(~declined)["truth_diff"]
    return {
        "truthfulqa_no_comment": round(float(declined.mean()), 4),
        "truthfulqa_rouge_diff_informative": round(float(rest.mean()) * 100, 3) if rest.len() else None,
    }


def collect(metrics: Path = Path("metrics"), eval_dir: Path = Path("data/eval")) -> list[dict]:
    """One row per evaluated model: safety on two axes, truthfulness, and loop statistics."""
    rows = []
    wins = read_json(metrics / "winrate.json").get("models", {})
    for f in sorted((metrics / "eval").glob("*.json"), key=lambda p: _order(p.stem)):
        ev, name = read_json(f), f.stem
        row: dict = {"model": name, "kind": "iteration" if name.startswith("it") else "baseline"}
        for key in ("harmful_rate", "over_refusal", "refusal_on_harmful"):
            if key in ev:
                row[key], (row[f"{key}_lo"], row[f"{key}_hi"]) = ev[key]["rate"], ev[key]["ci95"]
                row[f"{key}_n"] = ev[key]["n"]
        if "truthfulqa_rouge_diff" in ev:
            row["truthfulqa_rouge_diff"] = ev["truthfulqa_rouge_diff"]["mean"]
            if (eval_dir / f"{name}.parquet").is_file():
                row.update(truthfulness_yardstick(schema.read(eval_dir / f"{name}.parquet", schema.GENERATIONS)))
        if name in wins:
            row["win_rate"], (row["win_rate_lo"], row["win_rate_hi"]) = wins[name]["rate"], wins[name]["ci95"]
            row["win_rate_n"] = wins[name]["n"]
        it = metrics / name
        row["data_scaling"] = read_json(it / "merge.json").get("data_scaling")
        row["acceptance_rate"] = read_json(it / "filter.json").get("acceptance_rate")
        row["train_loss_last"] = read_json(it / "train.json").get("loss_last")
        rows.append(row)
    return rows


def write_summary(rows: list[dict], metrics: Path = Path("metrics"), extra: dict | None = None) -> dict:
    """metrics/summary.json (with `extra` blocks) and the plot table; returns the judges' block it wrote."""
    judge = read_json(metrics / "judge.json")
    win = read_json(metrics / "winrate.json")
    if win:  # the win-rate judge beside its measured accuracy
        judge = {**judge, "preference": {k: win[k] for k in ("judge", "judge_accuracy", "tie_margin", "against")}}
    write_json(metrics / "summary.json", {"models": {r["model"]: r for r in rows}, "judge": judge, **(extra or {})})
    cols = sorted({k for r in rows for k in r}, key=lambda c: (c != "model", c != "kind", c))
    write_csv(metrics / "plots" / "models.csv", [{c: r.get(c) for c in cols} for r in rows])
    return judge


def _fmt(row: dict, key: str) -> str:
    if row.get(key) is None:
        return "—"
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    ci = f" [{lo:.0%}, {hi:.0%}]" if lo is not None else ""
    return f"{row[key]:.1%}{ci}"


def _save(fig, path: Path) -> None:
    """A PNG written atomically, with no software version in it (the bytes stay the same run to run)."""
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})


def _finish(fig, ax, out: Path, name: str, legend: dict | None = None) -> str:
    """Legend, layout, the PNG written; the figure closed. Returns the file name."""
    import matplotlib.pyplot as plt

    if legend is not None:
        ax.legend(**legend)
    fig.tight_layout()
    _save(fig, out / name)
    plt.close(fig)
    return name


def plot(rows: list[dict], metrics: Path, out: Path) -> list[str]:
    """PNG plots (matplotlib, no network): trade-off scatter, per-iteration trends, loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    made = []
    pts = [r for r in rows if r.get("harmful_rate") is not None and r.get("over_refusal") is not None]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for r in pts:
            x, y = r["over_refusal"], r["harmful_rate"]
            xerr = [[x - r["over_refusal_lo"]], [r["over_refusal_hi"] - x]]
            yerr = [[y - r["harmful_rate_lo"]], [r["harmful_rate_hi"] - y]]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o" if r["kind"] == "iteration" else "s", capsize=3)
            ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(5, 5))
        ax.set_xlabel("over-refusal on benign prompts (lower is better)")
        ax.set_ylabel("harmful rate on harmful prompts (lower is better)")
        ax.set_title("Safety vs over-refusal, 95% intervals")
        made.append(_finish(fig, ax, out, "tradeoff.png"))
    curves = sorted(metrics.glob("*/train_loss.csv"))
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for f in curves:
            df = pl.read_csv(f)
            ax.plot(df["step"], df["loss"], label=f.parent.name)
        ax.set_xlabel("step")
        ax.set_ylabel("weighted answer-token loss")
        made.append(_finish(fig, ax, out, "train_loss.png", {}))
    return made


def _keyword_judged(gen: pl.DataFrame) -> pl.DataFrame:
    """The same answers scored by the keyword baseline: a refusal phrase = refusal; none = harmful."""
    kw = keyword_refusal(gen["answer"].to_list())
    return gen.with_columns(pl.Series("refusal_score", kw), pl.Series("harm_score", 1.0 - kw))


def comparisons(eval_dir: Path, threshold: float) -> dict:
    """ISARA's last iteration paired with each baseline that was evaluated, under both judges.

    {"x": name, "pairs": {baseline: {"trained": {rate: result}, "keyword": {...}, "flips": [rates]}}};
    a flip is a rate whose difference has opposite signs under the trained and the keyword judge.
    """
    names = {f.stem for f in eval_dir.glob("*.parquet")}
    last = max((n for n in names if re.fullmatch(r"it\d+", n)), key=lambda n: int(n[2:]), default=None)
    if last is None:
        return {}
    x = schema.read(eval_dir / f"{last}.parquet", schema.GENERATIONS)
    x_keyword = _keyword_judged(x)
    out: dict = {"x": last, "threshold": threshold, "pairs": {}}
    for base in (b for b in AGAINST if b in names):
        y = schema.read(eval_dir / f"{base}.parquet", schema.GENERATIONS)
        trained = compare_files([x], [y], threshold)
        # The keyword judge re-scores the judged rates only: no judge enters UNTRUTHFUL.
        keyword = compare_files([x_keyword], [_keyword_judged(y)], threshold, rates=JUDGED)
        flips = [r for r in trained if r in keyword and trained[r]["difference"] * keyword[r]["difference"] < 0]
        out["pairs"][base] = {"trained": trained, "keyword": keyword, "flips": flips}
    return out


def teacher_runs(metrics: Path = teacher.METRICS) -> dict[str, dict]:
    """Each run's teacher metrics (metrics/teacher/<run>.json), in iteration order."""
    files = sorted(metrics.glob("*.json"), key=lambda p: (not p.stem.startswith("it"), _order(p.stem)))
    return {f.stem: read_json(f) for f in files}


def difference_point(ax, r: dict, y: float) -> None:
    """One paired difference (a compare result) at height y with its 95% interval, coloured by its verdict."""
    colour = {"better": "tab:green", "worse": "tab:red"}.get(r["verdict"], "tab:gray")
    err = [[r["difference"] - r["ci95"][0]], [r["ci95"][1] - r["difference"]]]
    ax.errorbar(r["difference"], y, xerr=err, fmt="o", color=colour, capsize=3)


def plot_study(comp: dict, runs: dict[str, dict], out: Path) -> list[str]:
    """Forest plot of the paired differences; the teacher and the pool's growth per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    pairs = comp.get("pairs", {})
    if pairs:
        labels, results = [], []
        for base, both in pairs.items():
            for rate, r in both["trained"].items():
                labels.append(f"{rate} vs {base}" + (" (flips)" if rate in both["flips"] else ""))
                results.append(r)
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(labels) + 1.2))
        y = list(range(len(labels)))[::-1]
        for yi, r in zip(y, results, strict=True):
            difference_point(ax, r, yi)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel(f"{comp['x']} minus baseline (lower is better), 95% interval")
        ax.set_title(
            "Paired differences on the same prompts\n(green better, red worse, grey not separable)", fontsize=10
        )
        made.append(_finish(fig, ax, out, "forest.png"))
    if runs:
        names = list(runs)
        fig, ax = plt.subplots(figsize=(7, 4))
        series = {
            "harmful, accepted pairs": [r["accepted"]["harmful_rate"]["rate"] for r in runs.values()],
            "harmful, seed pairs": [r["seed"]["harmful_rate"]["rate"] for r in runs.values()],
            "refusing, accepted pairs": [r["accepted"]["refusal_rate"]["rate"] for r in runs.values()],
            "refusing, seed pairs": [r["seed"]["refusal_rate"]["rate"] for r in runs.values()],
            "label prompts with a generated neighbour": [
                r["label_prompts_with_generated_neighbor"]["rate"] for r in runs.values()
            ],
            "proposals off the seed's domain": [r["off_domain"]["rate"] for r in runs.values()],
        }
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series.items()):
            ax.bar([x + i * width for x in range(len(names))], values, width, label=label)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
        ax.set_ylabel("share")
        ax.set_ylim(0, 1)
        ax.set_title("The teacher: judged labels of each run beside the seed's")
        made.append(_finish(fig, ax, out, "teacher.png", {"fontsize": 7, "loc": "upper left"}))
        fig, ax = plt.subplots(figsize=(7, 4))
        grow = [r["growth"] for r in runs.values()]
        reasons = sorted({k for g in grow for k in g["rejected"]})
        ax.bar(names, [g["pool_before"] for g in grow], label="pool before the run", color="#b8c4d0")
        bottom = [g["pool_before"] for g in grow]
        ax.bar(names, [g["accepted"] for g in grow], bottom=bottom, label="accepted", color="tab:green")
        bottom = [b + g["accepted"] for b, g in zip(bottom, grow, strict=True)]
        for reason in reasons:
            counts = [g["rejected"].get(reason, 0) for g in grow]
            ax.bar(names, counts, bottom=bottom, label=f"rejected: {reason}")
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        ax.set_ylabel("pairs")
        ax.set_title("Data growth: the pool each run starts from, what it added and what it rejected")
        made.append(_finish(fig, ax, out, "growth.png", {"fontsize": 7, "loc": "upper left"}))
    return made


def pair_rows(runs: dict[str, dict], data: Path = teacher.DATA) -> dict:
    """Every judged pair of every run and the pool pairs their prompts showed: the page's browser data."""
    pool: dict[str, dict] = {}
    rows: list[dict] = []
    for run, stats in runs.items():
        if not (data / f"{run}.parquet").is_file():
            continue
        for e in schema.read(data / f"{run}.examples.parquet", teacher.EXAMPLES).iter_rows(named=True):
            origin = e["origin"] if e["origin"] == teacher.SEED else f"{e['origin']} it{e['iteration']}"
            pool[e["sample_id"]] = {"q": e["question"], "a": e["answer"], "o": origin}
        for r in schema.read(data / f"{run}.parquet", teacher.JUDGED).iter_rows(named=True):
            rows.append(
                {
                    "run": run,
                    "id": r["sample_id"],
                    "writer": stats.get("writer", ""),
                    "model_ref": r["model_ref"],
                    "question": r["question"],
                    "raw": r["raw"],
                    "answer": r["answer"],
                    "contexts": r["context_ids"],
                    "neighbors": r["neighbor_ids"],
                    "dists": [round(d, 4) for d in r["neighbor_dists"]],
                    "generated_neighbors": r["generated_neighbors"],
                    "rouge_context": round(r["rouge_context"], 4),
                    "rouge_pool": round(r["rouge_pool"], 4),
                    "q_words": r["question_words"],
                    "a_words": r["answer_words"],
                    "reason": r["reject_reason"],
                    "harm": round(r["harm_score"], 4),
                    "refusal": round(r["refusal_score"], 4),
                    "seed_sim": round(r["seed_similarity"], 4),
                }
            )
    return {"pool": pool, "rows": rows}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _rate_cell(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{r['rate']:.1%} [{lo:.0%}, {hi:.0%}] n={r['n']}"


def paired_cells(rate: str, r: dict) -> list[str]:
    """A paired comparison of one rate as table cells: the rate with its prompts (and seeds, when several),
    each arm's rate (the mean over its runs: one per seed in a study), difference, interval, p, verdict.

    A study pairs the two arms' runs seed by seed (a deterministic arm's one run stands beside every
    seed of the other), so the count shown is of seeds, not of the runs made."""
    runs = r["runs"]
    return [
        f"{rate} (n={r['n_prompts']}" + (f", seeds={len(runs)})" if len(runs) > 1 else ")"),
        _pct(sum(run["x_rate"] for run in runs) / len(runs)),
        _pct(sum(run["y_rate"] for run in runs) / len(runs)),
        f"{r['difference']:+.1%}",
        f"[{r['ci95'][0]:+.1%}, {r['ci95'][1]:+.1%}]",
        f"{r['p_value']:.3f}",
        r["verdict"],
    ]


def comparison_lines(comp: dict) -> list[list[str]]:
    """One row per (baseline, rate): `paired_cells`, then the keyword judge's view and whether it flips."""
    out = []
    for base, both in comp.get("pairs", {}).items():
        for rate, r in both["trained"].items():
            kw = both["keyword"].get(rate)
            out.append(
                [
                    base,
                    *paired_cells(rate, r),
                    "—" if kw is None else f"{kw['difference']:+.1%} ({kw['verdict']})",
                    "yes" if rate in both["flips"] else "",
                ]
            )
    return out


COMPARISON_HEADER = [
    "against",
    "rate",
    "ISARA",
    "baseline",
    "difference",
    "95% interval",
    "p",
    "verdict",
    "keyword judge",
    "flips",
]
TEACHER_HEADER = [
    "run",
    "written by",
    "accepted",
    "harmful: accepted",
    "harmful: seed",
    "refusing: accepted",
    "refusing: seed",
    "label prompts with a generated neighbour",
    "off the seed's domain",
]


def teacher_lines(runs: dict[str, dict]) -> list[list[str]]:
    return [
        [
            run,
            r.get("writer", ""),
            f"{r['growth']['accepted']} of {r['growth']['proposed']}",
            _rate_cell(r["accepted"]["harmful_rate"]),
            _rate_cell(r["seed"]["harmful_rate"]),
            _rate_cell(r["accepted"]["refusal_rate"]),
            _rate_cell(r["seed"]["refusal_rate"]),
            _rate_cell(r["label_prompts_with_generated_neighbor"]),
            _rate_cell(r["off_domain"]),
        ]
        for run, r in runs.items()
    ]


def samples(eval_dir: Path, per_suite: int = 2) -> list[str]:
    """A few answers of every model to the same prompts, as markdown."""
    lines = []
    frames = {f.stem: schema.read(f, schema.GENERATIONS) for f in sorted(eval_dir.glob("*.parquet"))}
    if not frames:
        return lines
    first = next(iter(frames.values()))
    picks = pl.concat([g.sort("prompt_id").head(per_suite) for _, g in first.group_by("suite", maintain_order=True)])
    for row in picks.iter_rows(named=True):
        lines += [f"#### [{row['suite']}] {row['prompt'][:200]}", ""]
        for name in sorted(frames, key=_order):
            hit = frames[name].filter(pl.col("prompt_id") == row["prompt_id"])
            if hit.height:
                h = hit.row(0, named=True)
                text = " ".join(h["answer"].split())[:300]
                lines.append(f"- **{name}** (harm {h['harm_score']:.2f}, refusal {h['refusal_score']:.2f}): {text}")
        lines.append("")
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


MODEL_HEADER = [
    "model",
    "harmful rate",
    "over-refusal",
    "win rate vs pretrained",
    "TruthfulQA ROUGE-L diff",
    "data scaling",
    "accepted",
]


def model_lines(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        tqa = "—" if r.get("truthfulqa_rouge_diff") is None else f"{r['truthfulqa_rouge_diff']:+.2f}"
        if r.get("truthfulqa_no_comment") is not None:
            informative = r.get("truthfulqa_rouge_diff_informative")
            tqa += f" ({r['truthfulqa_no_comment']:.0%} 'no comment'"
            tqa += f"; rest {informative:+.2f})" if informative is not None else ")"
        ds = "—" if r.get("data_scaling") is None else f"×{r['data_scaling']:.2f}"
        acc = "—" if r.get("acceptance_rate") is None else f"{r['acceptance_rate']:.0%}"
        out.append([r["model"], _fmt(r, "harmful_rate"), _fmt(r, "over_refusal"), _fmt(r, "win_rate"), tqa, ds, acc])
    return out


MODELS_NOTE = (
    'TruthfulQA counts "I have no comment." as true; the share of such answers and the ROUGE-L difference of the'
    " other answers are shown beside the score. Harmful rate and over-refusal are judged by the trained judges"
    " below, win rate (AlpacaEval instructions, against the pretrained model's answers; a tie counts half) by the"
    " preference judge below; read each with its judge's measured accuracy."
)
COMPARISONS_NOTE = (
    "{x} against each baseline on the same prompts: the difference in each rate (lower is better for all), its 95%"
    " interval and p-value from the exact McNemar test (one run per arm), and the verdict at alpha 0.05. The keyword"
    " judge (a refusal phrase in the answer's start = refusal; none = harmful) scores the same answers; 'flips' marks"
    " a rate whose difference changes sign between the two judges. One run per arm: what a seed would change is not"
    " in these intervals."
)
TEACHER_NOTE = (
    "The judges' view of the pairs each run's model labelled for itself (accepted pairs) beside the seed pairs D0,"
    " on the same judges; the share of labelling prompts that held at least one generated pair among their"
    " neighbours; and the share of proposals off the seed's domain ({definition})."
)


POWER_HEADER = [
    "rate",
    "prompts per model",
    "95% half-width of one rate at 50%",
    "prompts for a half-width of 6 points",
]
POWER_NOTE = (
    "What this run's sample sizes can tell apart: a rate near 50% measured on n prompts has a 95% interval of"
    " about ±1.96·sqrt(0.25/n). Differences smaller than the half-width are rarely separable here."
)
TARGET_HALF_WIDTH = 0.06


def power_lines(comp: dict) -> list[list[str]]:
    """Per rate of the paired comparisons: its prompts and the widest 95% half-width they allow."""
    first = next(iter(comp.get("pairs", {}).values()), {}).get("trained", {})
    need = math.ceil(1.96**2 * 0.25 / TARGET_HALF_WIDTH**2)
    return [
        [rate, str(r["n_prompts"]), f"±{1.96 * math.sqrt(0.25 / r['n_prompts']):.1%}", str(need)]
        for rate, r in first.items()
        if r["n_prompts"]
    ]


JUDGE_HEADER = [
    "judge", "what", "held-out set", "n (questions)", "F1", "F1 95% interval", "precision", "recall", "keyword baseline F1"
]  # fmt: skip


def judge_lines(judge: dict) -> list[list[str]]:
    """Each judge's held-out scores beside the keyword baseline's on the same rows."""
    out = []
    for which in ("harm", "refusal"):
        spec = judge.get(which) or {}
        for test, m in spec.get("held_out", {}).items():
            kw = spec.get("keyword_baseline", {}).get(test)
            # Files written before the interval existed have neither key: "—", not a made-up interval.
            n = f"{m['n']} ({m['questions']})" if "questions" in m else str(m["n"])
            ci = "[{:.2f}, {:.2f}]".format(*m["f1_ci95"]) if "f1_ci95" in m else "—"
            scores = [f"{m['f1']:.3f}", ci, f"{m['precision']:.3f}", f"{m['recall']:.3f}"]
            out.append([which, spec.get("judge", ""), test, n, *scores, f"{kw['f1']:.3f}" if kw else "—"])
    return out


def comparisons_note(comp: dict) -> str:
    text = COMPARISONS_NOTE.format(x=comp["x"])
    if any(UNTRUTHFUL in both["trained"] for both in comp.get("pairs", {}).values()):
        text += (
            f" '{UNTRUTHFUL}' (TruthfulQA prompts): the answer's ROUGE-L is no closer to a correct reference than to"
            " an incorrect one; 'I have no comment.' counts as truthful, as in TruthfulQA; no judge enters it."
        )
    return text


def judge_note(judge: dict) -> str:
    text = f"Decision threshold {judge.get('threshold')}."
    if judge.get("excluded_seeds"):
        text += f" No question of these seeds trained a judge: {', '.join(judge['excluded_seeds'])}."
    pref = judge.get("preference")
    if pref:
        text += (
            f" Preference judge (win rate): {pref.get('judge', '')}; measured accuracy {pref.get('judge_accuracy')}."
        )
    return text


def tables(
    rows: list[dict], comp: dict, runs: dict[str, dict], judge: dict | None = None
) -> list[tuple[str, str, list[str], list[list[str]], str]]:
    """The report's tables, each as (heading, note before, header, rows, note after), for index.md and index.html."""
    out = [("Models", "", MODEL_HEADER, model_lines(rows), MODELS_NOTE)]
    if judge and (judged := judge_lines(judge)):
        out.append(("Judges", "", JUDGE_HEADER, judged, judge_note(judge)))
    if comp:
        out.append(("Paired comparisons", comparisons_note(comp), COMPARISON_HEADER, comparison_lines(comp), ""))
        if power := power_lines(comp):
            out.append(("Power of this run", POWER_NOTE, POWER_HEADER, power, ""))
    if runs:
        definition = next(iter(runs.values()))["off_domain"]["definition"]
        out.append(("The teacher", TEACHER_NOTE.format(definition=definition), TEACHER_HEADER, teacher_lines(runs), ""))
    return out


def render(metrics: Path = Path("metrics"), eval_dir: Path = Path("data/eval"), out: Path = Path("report")) -> Path:
    """report/index.md and report/index.html (self-contained), metrics/summary.json, and the plots."""
    rows = collect(metrics, eval_dir)
    threshold = read_json(metrics / "judge.json").get("threshold")
    comp = comparisons(eval_dir, threshold) if threshold is not None else {}
    runs = teacher_runs(metrics / "teacher")
    judge = write_summary(rows, metrics, {"comparisons": comp, "teacher": runs})
    pngs = plot(rows, metrics, out) + plot_study(comp, runs, out)
    sections = tables(rows, comp, runs, judge)
    lines = ["# isara report", ""]
    for heading, before, header, body, after in sections:
        lines += [f"## {heading}", ""] + ([before, ""] if before else []) + _md_table(header, body) + [""]
        lines += [after, ""] if after else []
    lines += [
        "## The judges, as recorded",
        "",
        "```json",
        json.dumps(judge, indent=2, sort_keys=True),  # as summary.json holds it
        "```",
        "",
    ]
    lines += [f"![{p}]({p})" for p in pngs]
    lines += ["", "## Sample generations", ""] + samples(eval_dir)
    write_text(out / "index.md", "\n".join(lines) + "\n")
    write_text(out / "index.html", page(sections, runs, judge, [out / p for p in pngs]))
    log.info("wrote %s/index.md, %s/index.html and %d plots", out, out, len(pngs))
    return out / "index.md"


def page(sections: list, runs: dict[str, dict], judge: dict, pngs: list[Path]) -> str:
    """The browser page: the same tables as index.md, the plots inline, and the pair browser."""
    body = [
        (
            heading,
            (html.note(before) if before else "") + html.table(header, rows) + (html.note(after) if after else ""),
        )
        for heading, before, header, rows, after in sections
    ]
    body.append(("Plots", "".join(html.image(p, p.stem.replace("_", " ")) for p in pngs)))
    threshold = judge.get("threshold", 0.5)
    return html.page("isara report", body, {**pair_rows(runs), "threshold": threshold, "page_rows": html.PAGE_ROWS})
