"""Turn a pytest-benchmark JSON file into BENCHMARKS.md (the ratios measured in one run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


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


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.write_text(render(json.loads(src.read_text(encoding="utf-8"))), encoding="utf-8")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
