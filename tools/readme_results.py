"""Copy the committed runs' result tables from each report into README.md, between markers.

The README's result tables are never typed: each block between
`<!-- results: PIPELINE SECTION -->` and `<!-- /results -->` is the table under `## SECTION`
of `PIPELINE/report/index.md`, the report stage's output of that run, or of PIPELINE itself
when it names a page (`study/index.md`, written by `isara study report`).

    python tools/readme_results.py           # rewrite the blocks
    python tools/readme_results.py --check   # exit 1, naming the block, if one is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- results: (\S+) (.+?) -->\n)(.*?)(<!-- /results -->)", re.S)


def table(report: Path, section: str) -> str:
    """The first markdown table under `## section` of a report, as text."""
    if not report.is_file():
        raise SystemExit(f"{report}: no report (run the pipeline's report stage)")
    lines = report.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(f"## {section}")
    except ValueError:
        raise SystemExit(f"{report}: no section '## {section}'") from None
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    if not rows:
        raise SystemExit(f"{report}: section '## {section}' holds no table")
    return "\n".join(rows) + "\n"


def rewrite(text: str, root: Path = ROOT) -> str:
    def fill(m: re.Match) -> str:
        pipeline, section = m.group(2), m.group(3)
        page = root / pipeline if pipeline.endswith(".md") else root / pipeline / "report" / "index.md"
        return m.group(1) + table(page, section) + m.group(5)

    return BLOCK.sub(fill, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only say whether every block is up to date")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args()
    text = args.readme.read_text(encoding="utf-8")
    new = rewrite(text, args.readme.parent)
    if args.check:
        stale = [f"{a} {b}" for (a, b, old), (_, _, now) in zip(_blocks(text), _blocks(new), strict=True) if old != now]
        if stale:
            print(f"{args.readme}: result tables out of date: {'; '.join(stale)} (python tools/readme_results.py)")
            sys.exit(1)
        print(f"{args.readme}: {len(_blocks(text))} result tables match their reports")
        return
    args.readme.write_text(new, encoding="utf-8")
    print(f"rewrote {len(_blocks(new))} result tables in {args.readme}")


def _blocks(text: str) -> list[tuple[str, str, str]]:
    return [(m.group(2), m.group(3), m.group(4)) for m in BLOCK.finditer(text)]


if __name__ == "__main__":
    main()
