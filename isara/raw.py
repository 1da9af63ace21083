"""Readers of the public datasets in data/raw: a missing file is a one-line error naming it."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from isara.errors import IsaraError
from isara.schema import norm


def need(path: Path) -> Path:
    """The path, or a one-line error naming it when the raw data file is missing."""
    if not path.is_file():
        raise IsaraError(f"{path}: raw data file not found")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file, gzip-compressed or not."""
    opener = gzip.open if need(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV file, gzip-compressed or not."""
    opener = gzip.open if need(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def alpaca_references(raw: Path) -> dict[str, str]:
    """AlpacaEval 2.0's reference outputs (GPT-4 Turbo), by normalised instruction."""
    with gzip.open(need(raw / "alpaca_eval/alpaca_eval_gpt4_1106_preview.json.gz"), "rt", encoding="utf-8") as fh:
        return {norm(r["instruction"]): r["output"] for r in json.load(fh)}
