"""Two runs of the default profile that differ only in generation precision, model by model.

    python tools/precision_compare.py [--x data/eval] [--y docs/precision/fp32] [--out docs/precision.md]

--x and --y hold one generations parquet per model (`data/eval/<model>.parquet`, the files the
evaluate stages write). Every model both folders hold is compared on the prompts both answered,
each rate of isara.paired.RATES with the exact McNemar test, as `isara compare` does; the page
lists the rates, the discordant prompts and the verdict, and counts the separable differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isara import schema  # noqa: E402
from isara.config import load_params  # noqa: E402
from isara.paired import compare_files  # noqa: E402
from isara.paths import write_text  # noqa: E402


def rows(x_dir: Path, y_dir: Path, threshold: float) -> tuple[list[tuple[str, str, dict]], dict[str, tuple[int, int]]]:
    """(model, rate, comparison) for every model both folders hold, x against y; and per model, how many
    of the prompts both answered got the same answer, byte for byte."""
    models = sorted({p.stem for p in x_dir.glob("*.parquet")} & {p.stem for p in y_dir.glob("*.parquet")})
    if not models:
        raise SystemExit(f"error: {x_dir} and {y_dir} hold no generations file of the same model")
    out, same = [], {}
    for model in models:
        x = schema.read(x_dir / f"{model}.parquet", schema.GENERATIONS)
        y = schema.read(y_dir / f"{model}.parquet", schema.GENERATIONS)
        for rate, r in compare_files([x], [y], threshold).items():
            out.append((model, rate, r))
        both = x.join(y, on="prompt_id", suffix="_y")
        same[model] = (int((both["answer"] == both["answer_y"]).sum()), both.height)
    return out, same


def page(
    found: list[tuple[str, str, dict]], same: dict[str, tuple[int, int]], x_dir: str, y_dir: str, threshold: float
) -> str:
    separable = [(m, rate) for m, rate, r in found if r["verdict"] in ("better", "worse")]
    lines = [
        "# Generation precision: two runs of the default profile, model by model",
        "",
        "<!-- written by `python tools/precision_compare.py`; edit that, not this -->",
        "Two runs whose params differ only in `propose.bf16`, `label.bf16` and `evaluate.bf16` (README: the"
        " committed default run).",
        f"x: `{x_dir}`, y: `{y_dir}`. Lower is better for every rate; exact McNemar per model and rate;"
        f" judges' threshold {threshold:g} (`judge.threshold`).",
        "",
        "| model | rate | x | y | x - y | only x / only y | p | verdict for x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, rate, r in found:
        run = r["runs"][0]
        lines.append(
            f"| {model} | {rate} (n={r['n_prompts']}) | {run['x_rate']:.1%} | {run['y_rate']:.1%} | "
            f"{r['difference']:+.1%} | {run['only_x']} / {run['only_y']} | {r['p_value']:.3f} | {r['verdict']} |"
        )
    named = ", ".join(f"{m} {rate}" for m, rate in separable) or "none"
    lines += ["", f"Separable at p < 0.05: {len(separable)} of {len(found)} ({named}).", ""]
    lines += ["| model | the same answer, byte for byte |", "|---|---|"]
    lines += [f"| {model} | {n} of {total} |" for model, (n, total) in same.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--x", default="data/eval", help="folder of one run's generations (default: data/eval)")
    ap.add_argument("--y", default="docs/precision/fp32", help="folder of the other run's generations")
    ap.add_argument("--out", default="docs/precision.md", help="the page to write")
    args = ap.parse_args()
    threshold = load_params(ROOT / "params.yaml").judge.threshold
    text = page(*rows(Path(args.x), Path(args.y), threshold), args.x, args.y, threshold)
    write_text(Path(args.out), text)
    print(text, end="")


if __name__ == "__main__":
    main()
