"""Turn a pytest-benchmark JSON file into BENCHMARKS.md (the ratios measured in one run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FINDINGS = "## Findings"


def render(data: dict) -> str:
    machine = data.get("machine_info", {})
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {machine.get('cpu', {}).get('brand_raw', 'unknown CPU')}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine.get('python_version', '?')}. "
        "Each row compares a fast path with its baseline **in the same run**; targets are ratios, never times.",
        "",
        "| benchmark | input | baseline | fast path | ratio | floor |",
        "|---|---|---|---|---|---|",
    ]
    for b in data.get("benchmarks", []):
        x = b.get("extra_info", {})
        lines.append(
            f"| {b['name']} | {x.get('input', '')} | {x.get('baseline', '')} | {x.get('fast', '')} | "
            f"{x.get('speed_ratio', float('nan')):.1f}x | {x.get('floor', '—')} |"
        )
    lines += ["", "Reproduce: `make bench` (or `pytest tests/bench --benchmark-only`).", ""]
    return "\n".join(lines)


def plot_losses(data: dict, out: Path) -> bool:
    """Loss per step of every training variant against the baseline's, one PNG: equivalent curves?"""
    curves = {}
    for b in data.get("benchmarks", []):
        curves.update(b.get("extra_info", {}).get("losses", {}))
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, losses in sorted(curves.items()):
        ax.plot(range(1, len(losses) + 1), losses, marker="o", label=name, lw=2.5 if name == "baseline" else 1.2)
    ax.set(xlabel="optimizer step", ylabel="training loss", title="Training variants on the same batches")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return True


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(src.read_text(encoding="utf-8"))
    text = render(data)
    png = dst.with_name("bench_train_loss.png")
    if plot_losses(data, png):
        text += f"\n![loss per step of each training variant]({png.name})\n"
    old = dst.read_text(encoding="utf-8") if dst.is_file() else ""
    if FINDINGS in old:  # the hand-written reading of the numbers survives a rerun; update it by hand
        text += "\n" + old[old.index(FINDINGS) :]
    dst.write_text(text, encoding="utf-8")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
