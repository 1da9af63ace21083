"""Stage report: metrics/summary.json, plot tables, and report/ (markdown + PNG, rendered offline)."""

from isara.cli import run_stage
from isara.report import render


def main() -> None:
    render()


if __name__ == "__main__":
    run_stage(main)
