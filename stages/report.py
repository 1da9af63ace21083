"""Stage report: metrics/summary.json, plot tables, and report/ (markdown + PNG, rendered offline)."""

from isara.report import render
from isara.stage import run_stage


def main() -> None:
    render()


if __name__ == "__main__":
    run_stage(main)
