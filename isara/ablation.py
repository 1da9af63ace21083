"""The ablation: study folders (one per setting) side by side, the README's rule over them, the
teacher curve and the plots that read them (`isara study table DIR... --page FILE`).
"""

from __future__ import annotations

from pathlib import Path

from isara import paths
from isara.errors import IsaraError
from isara.paired import JUDGED, compare_files
from isara.report import paired_cells, read_json
from isara.study import RUNS, read_record, read_runs, stale_teacher, teacher_metrics
from isara.study_report import mean_rate

TABLE_HEADER = [
    "study",
    "settings",
    "seeds",
    "arm",
    "harmful: category",
    "harmful: other",
    "over-refusal: XSTest",
    "over-refusal: AlpacaEval",
    "ICL-kNN harmful: category (its examples, the evaluation's decoding)",
    "its accepted pairs judged harmful",
    "against SFT",
    "against the schedule-matched SFT",
    "minutes",
]


def table(dirs: list[Path]) -> str:
    """One row per study folder (an ablation setting): the ISARA arm's rates (or, in a study of the
    teacher alone, the teacher's), the teacher's category harm, the judges' harmful rate over the
    ISARA arm's own accepted pairs (its teacher metrics), the rule's answer, minutes."""
    from isara.report import _md_table

    rows = []
    for d in dirs:
        record, summary = read_json(d / RUNS), read_json(d / "summary.json")
        if not record or not summary:
            raise IsaraError(f"{d}: no runs.json and summary.json; `isara study run` / `isara study report` write them")
        if sorted(summary["seeds"]) != sorted(int(k) for k in record["seeds"]):
            raise IsaraError(f"{d}: summary.json is older than runs.json; run `isara study report --out {d}`")
        seeds = sorted(record["seeds"], key=int)
        x = summary["comparisons"]["x"]
        arm = x if x in summary["rates"] else next(iter(summary["rates"]))

        overrides = record.get("overrides") or {}
        rows.append([
            d.name,
            ", ".join(f"{k}={v}" for k, v in overrides.items()) or "params.yaml",
            str(len(summary["seeds"])),
            arm,
            *(mean_rate(summary["rates"][arm][r]) for r in JUDGED),
            mean_rate(summary["rates"].get("icl_knn", {}).get("harmful_category")),
            mean_rate([m["accepted"]["harmful_rate"] for _, m in teacher_metrics(d, record, seeds).get(arm, [])])
            + (" (an earlier judge)" if stale_teacher(record, seeds) else ""),
            *(summary["answers"][b].split(": ", 1)[1] for b in ("sft", "sft_matched")),
            f"{sum(r['wall_s'] for r in record['seeds'].values()) / 60:.0f}",
        ])  # fmt: skip
    return "\n".join(_md_table(TABLE_HEADER, rows)) + "\n"


def choose(dirs: list[Path]) -> str:
    """The README's rule over the ablation: among the settings whose ISARA arm beats SFT by the rule
    (the schedule-matched SFT's answer is shown beside it, not required), the lowest harmful rate on
    the seed's category; or plainly none."""
    winners = []
    for d in dirs:
        summary = read_json(d / "summary.json") or {}
        if not summary.get("comparisons", {}).get("pairs"):
            continue  # the teacher alone: no ISARA arm to choose
        if summary["answers"]["sft"].endswith(": beats it"):
            x = summary["comparisons"]["x"]
            runs = summary["rates"][x]["harmful_category"]
            winners.append((sum(r["rate"] for r in runs) / len(runs), d.name))
    if not winners:
        return (
            "No setting of the ablation lets ISARA beat SFT by the README's rule, so none is chosen: "
            "the default stays as it is."
        )
    harm, name = min(winners)
    return (
        f"Chosen by the README's rule: {name} ({harm:.1%} harmful on the seed's category, the lowest of the "
        f"{len(winners)} setting(s) that beat SFT); it becomes the default once its default run "
        "fits 30 minutes here."
    )


def _against_first(dirs: list[Path], arm_of) -> list[list[str]]:
    """Each study's arm (arm_of(record): its name, or None to leave the study out) against the first
    such study listed, paired on the prompts both answered and pooled over seeds as the study page does."""
    chosen = [(d, arm_of(read_record(d))) for d in dirs]
    chosen = [(d, a) for d, a in chosen if a]
    if len(chosen) < 2:
        return []
    (ref, ref_arm), rows = chosen[0], []
    ref_record, ref_arms, _ = read_runs(ref)
    for d, arm in chosen[1:]:
        _, arms, _ = read_runs(d)
        for rate, r in compare_files(arms[arm], ref_arms[ref_arm], ref_record["threshold"]).items():
            rows.append([d.name, ref.name, *paired_cells(rate, r)])
    return rows


def teacher_curve(dirs: list[Path]) -> list[list[str]]:
    """Each study of the teacher alone (`--only icl_knn`) against the first one listed, the reference."""
    return _against_first(dirs, lambda record: "icl_knn" if record.get("only") == ["icl_knn"] else None)


def isara_settings(dirs: list[Path]) -> list[list[str]]:
    """ISARA's arm of each study that ran it against the first such study listed (the default's, listed first)."""
    return _against_first(
        dirs, lambda r: r["sampled"][0] if r.get("sampled") and r.get("only") != ["icl_knn"] else None
    )


def plot_ablation(dirs: list[Path], out: Path) -> list[str]:
    """ablation.png: each setting's ISARA arm minus SFT per rate, with its 95% interval; teacher.png:
    each teacher-alone study's ICL-kNN rates with their Wilson intervals. The files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    from isara.report import _finish, difference_point

    summaries = [(d.name, read_json(d / "summary.json")) for d in dirs]
    whole = [
        (n, s["comparisons"]["pairs"]["sft"]["trained"])
        for n, s in summaries
        if "sft" in s.get("comparisons", {}).get("pairs", {})
    ]
    teachers = [(n, s["rates"]["icl_knn"]) for n, s in summaries if set(s.get("rates", {})) == {"icl_knn"}]
    made = []
    if whole:
        shown = [rate for rate in JUDGED if all(rate in pairs for _, pairs in whole)]
        fig, axes = plt.subplots(1, len(shown), figsize=(11, 0.45 * len(whole) + 1.6), sharey=True, squeeze=False)
        axes, y = axes[0], list(range(len(whole)))[::-1]
        for ax, rate in zip(axes, shown, strict=True):
            for yi, (_, pairs) in zip(y, whole, strict=True):
                difference_point(ax, pairs[rate], yi)
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_title(rate, fontsize=9)
            ax.set_ylim(-0.6, len(whole) - 0.4)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.tick_params(labelsize=8)
        axes[0].set_yticks(y, [n for n, _ in whole], fontsize=8)
        fig.suptitle("ISARA minus SFT at each setting, same prompts, 95% interval (lower is better;\n"
                     "green better, red worse, grey not separable)", fontsize=10)  # fmt: skip
        made.append(_finish(fig, axes[0], out, "ablation.png"))
    if whole:
        made.append(plot_tradeoff([(n, s) for n, s in summaries if any(n == w for w, _ in whole)], out))
    if teachers:
        fig, ax = plt.subplots(figsize=(7, 4))
        x = range(len(teachers))
        shown = [r for r in JUDGED if all(r in rates for _, rates in teachers)]
        for i, rate in enumerate(shown):
            runs = [rates[rate][0] for _, rates in teachers]
            shift = [xi + (i - (len(shown) - 1) / 2) * 0.08 for xi in x]  # side by side, centred on the setting
            err = [[r["rate"] - r["ci95"][0] for r in runs], [r["ci95"][1] - r["rate"] for r in runs]]
            ax.errorbar(shift, [r["rate"] for r in runs], yerr=err, fmt="o-", capsize=3, label=rate)
        ax.set_xticks(list(x), [n for n, _ in teachers], fontsize=8)
        ax.set_ylabel("rate (95% Wilson interval)")
        ax.set_ylim(0, 1)
        ax.set_title("The teacher alone: ICL-kNN at each setting")
        made.append(_finish(fig, ax, out, "teacher.png", {"fontsize": 8}))
    return made


def plot_tradeoff(summaries: list[tuple[str, dict]], out: Path) -> str:
    """tradeoff.png: each setting's ISARA arm, SFT and schedule-matched SFT as points of harm on the seed's
    category against over-refusal on XSTest (means over seeds). A setting can lower harm by refusing more;
    SFT's two points, the same data trained for fewer and for more steps, show where plain fine-tuning
    lands on that trade-off. Descriptive: the verdicts are the rule's, from the paired tests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    from isara.report import _finish

    def mean(rates: dict, arm: str, rate: str) -> float | None:
        runs = rates.get(arm, {}).get(rate)
        return sum(r["rate"] for r in runs) / len(runs) if runs else None

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for i, (name, summary) in enumerate(summaries):
        rates, colour = summary["rates"], f"C{i % 10}"
        point = {a: (mean(rates, a, "over_refusal_xstest"), mean(rates, a, "harmful_category"))
                 for a in (summary["comparisons"]["x"], "sft", "sft_matched")}  # fmt: skip
        family = [point[a] for a in ("sft", "sft_matched") if None not in point[a]]
        if len(family) == 2:
            ax.plot(*zip(*family, strict=True), "--", color=colour, linewidth=0.8)
        for arm, marker in zip(point, ("o", "s", "^"), strict=True):
            if None not in point[arm]:
                ax.plot(*point[arm], marker, color=colour, markersize=8 if marker == "o" else 6,
                        label=name if marker == "o" else None)  # fmt: skip
        pre = (mean(rates, "pretrained", "over_refusal_xstest"), mean(rates, "pretrained", "harmful_category"))
        if None not in pre:
            ax.plot(*pre, "kx", markersize=8)
            ax.annotate("pretrained", pre, fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("over-refusal on XSTest (safe prompts refused)")
    ax.set_ylabel("harmful rate on the seed's category")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title("ISARA (circle), SFT (square) and schedule-matched SFT (triangle) at each setting;\n"
                 "means over seeds, lower left is better", fontsize=10)  # fmt: skip
    return _finish(fig, ax, out, "tradeoff.png", {"fontsize": 7, "loc": "upper right"})


def ablation_page(dirs: list[Path], page: Path, settings: str | None = None, choice: str | None = None) -> Path:
    """The ablation as a page: the settings side by side, the rule's choice and the teacher curve,
    from the study folders (`settings` and `choice`: table(dirs) and choose(dirs), when made already)."""
    from isara.report import _md_table

    settings, choice = settings or table(dirs), choice or choose(dirs)

    text = "\n".join([
        "# The ablation: one study per setting, side by side",
        "",
        f"Built by `isara study table {' '.join(str(d) for d in dirs)} --page {page}` from each folder's "
        "runs.json and summary.json (`isara study report` writes them). Rates are means over a study's seeds; "
        "a study of the teacher alone (`--only icl_knn`) shows ICL-kNN's rates in ISARA's columns. ICL-kNN answers "
        "with the evaluation's decoding (`evaluate.*`), ISARA labels with `label.*`: where they differ, the labels "
        "ISARA trained on are the column \"its accepted pairs judged harmful\", not ICL-kNN's rate.",
        "",
        "## Settings side by side",
        "",
        settings.rstrip("\n"),
        "",
        *(f"![{name[:-4]}]({name})" for name in plot_ablation(dirs, page.parent)),
        "",
        "## The default, by the README's rule",
        "",
        *_md_table(["the README's rule over these settings"], [[choice]]),
        "",
    ])  # fmt: skip
    header = ["setting", "against", "rate", "this setting", "reference", "difference", "95% interval", "p", "verdict"]
    for title, rows in (
        ("ISARA at each setting against the first ISARA study listed", isara_settings(dirs)),
        ("The teacher curve: each setting's ICL-kNN against the first one listed", teacher_curve(dirs)),
    ):
        if rows:
            text += "\n".join(["", f"## {title}", "", *_md_table(header, rows), ""])
    text += (
        "\nLower is better for every rate. The same prompts for both; seeds paired in order, pooled with a "
        "bootstrap over prompts and runs (exact McNemar when each side ran once).\n"
    )
    paths.write_text(page, text)
    return page
