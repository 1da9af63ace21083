"""Across iterations and baselines: one summary table, plots rendered offline, sample generations."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import polars as pl

from isara import schema
from isara.paths import atomic, write_csv, write_json, write_text

log = logging.getLogger(__name__)
BASELINES = ("pretrained", "sft", "icl_random", "icl_knn", "oneshot")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _order(name: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"it(\d+)", name)
    return (1, int(m.group(1)), name) if m else (0, BASELINES.index(name) if name in BASELINES else 99, name)


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
    wins = _load(metrics / "winrate.json").get("models", {})
    for f in sorted((metrics / "eval").glob("*.json"), key=lambda p: _order(p.stem)):
        ev, name = _load(f), f.stem
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
        row["data_scaling"] = _load(it / "merge.json").get("data_scaling")
        row["acceptance_rate"] = _load(it / "filter.json").get("acceptance_rate")
        row["train_loss_last"] = _load(it / "train.json").get("loss_last")
        rows.append(row)
    return rows


def write_summary(rows: list[dict], metrics: Path = Path("metrics")) -> dict:
    """metrics/summary.json and the plot table; returns the judges' block it wrote."""
    judge = _load(metrics / "judge.json")
    win = _load(metrics / "winrate.json")
    if win:  # the win-rate judge beside its measured accuracy
        judge = {**judge, "preference": {k: win[k] for k in ("judge", "judge_accuracy", "tie_margin", "against")}}
    write_json(metrics / "summary.json", {"models": {r["model"]: r for r in rows}, "judge": judge})
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
        fig.tight_layout()
        _save(fig, out / "tradeoff.png")
        plt.close(fig)
        made.append("tradeoff.png")
    curves = sorted(metrics.glob("*/train_loss.csv"))
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for f in curves:
            df = pl.read_csv(f)
            ax.plot(df["step"], df["loss"], label=f.parent.name)
        ax.set_xlabel("step")
        ax.set_ylabel("weighted answer-token loss")
        ax.legend()
        fig.tight_layout()
        _save(fig, out / "train_loss.png")
        plt.close(fig)
        made.append("train_loss.png")
    return made


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


def render(metrics: Path = Path("metrics"), eval_dir: Path = Path("data/eval"), out: Path = Path("report")) -> Path:
    rows = collect(metrics, eval_dir)
    judge = write_summary(rows, metrics)
    pngs = plot(rows, metrics, out)
    lines = ["# isara report", "", "## Models", ""]
    lines += [
        "| model | harmful rate | over-refusal | win rate vs pretrained | TruthfulQA ROUGE-L diff | data scaling | accepted |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    for r in rows:
        tqa = "—" if r.get("truthfulqa_rouge_diff") is None else f"{r['truthfulqa_rouge_diff']:+.2f}"
        if r.get("truthfulqa_no_comment") is not None:
            informative = r.get("truthfulqa_rouge_diff_informative")
            tqa += f" ({r['truthfulqa_no_comment']:.0%} 'no comment'"
            tqa += f"; rest {informative:+.2f})" if informative is not None else ")"
        ds = "—" if r.get("data_scaling") is None else f"×{r['data_scaling']:.2f}"
        acc = "—" if r.get("acceptance_rate") is None else f"{r['acceptance_rate']:.0%}"
        cells = [r["model"], _fmt(r, "harmful_rate"), _fmt(r, "over_refusal"), _fmt(r, "win_rate"), tqa, ds, acc]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        'TruthfulQA counts "I have no comment." as true; the share of such answers and the ROUGE-L',
        "difference of the other answers are shown beside the score.",
        "",
        "Harmful rate and over-refusal are judged by the trained judges below, win rate (AlpacaEval",
        "instructions, against the pretrained model's answers; a tie counts half) by the preference judge",
        "below; read each with its judge's measured accuracy.",
        "",
        "## Judges",
        "",
        "```json",
        json.dumps(judge, indent=2, sort_keys=True),  # as summary.json holds it
        "```",
        "",
    ]
    lines += [f"![{p}]({p})" for p in pngs]
    lines += ["", "## Sample generations", ""] + samples(eval_dir)
    write_text(out / "index.md", "\n".join(lines) + "\n")
    log.info("wrote %s/index.md and %d plots", out, len(pngs))
    return out / "index.md"
