"""Bring your own seed: read a CSV / JSONL / parquet of Q/A pairs, validate it, write SEED parquet."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from isara import schema
from isara.errors import IsaraError
from isara.schema import norm

MAX_FIELD_CHARS = 20_000  # a longer question or answer is almost surely a broken file


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # a UTF-8 BOM is accepted and dropped
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise IsaraError(f"{path}: line {line}: not valid UTF-8") from None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _records(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".jsonl", ".json", ".csv", ".tsv"):
        raise IsaraError(f"{path}: unsupported seed format '{suffix}' (use .csv, .tsv, .jsonl or .parquet)")
    if suffix == ".parquet":
        try:
            return pl.read_parquet(path).to_dicts()
        except Exception as err:  # polars raises several types for corrupt files
            raise IsaraError(f"{path}: not a readable parquet file ({type(err).__name__})") from None
    text = _read_text(path)
    if suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise IsaraError(f"{path}: line {n}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise IsaraError(f"{path}: line {n}: expected a JSON object")
            rows.append(row)
        return rows
    import csv
    import io

    rows = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        for n, row in enumerate(reader, start=1):
            # A row longer or shorter than the header (an unquoted comma) would silently lose text.
            if None in row or None in row.values():
                raise IsaraError(f"{path}: row {n}: not as many fields as the header (an unquoted comma?)")
            rows.append(row)
    except csv.Error as err:
        raise IsaraError(f"{path}: malformed CSV ({err})") from None
    return rows


def _text(path: Path, n: int, name: str, value) -> str:
    """A field that must hold text: one-line errors naming the file, row and column."""
    if not isinstance(value, str):
        raise IsaraError(f"{path}: row {n}: '{name}' is not text (got {type(value).__name__})")
    if not value.strip():
        raise IsaraError(f"{path}: row {n}: '{name}' is blank")
    if _has_surrogate(value):
        raise IsaraError(f"{path}: row {n}: '{name}' has an unpaired surrogate, not valid Unicode")
    if len(value) > MAX_FIELD_CHARS:
        raise IsaraError(f"{path}: row {n}: '{name}' is {len(value)} characters (max {MAX_FIELD_CHARS})")
    return value.strip()


def _rows(path: Path, columns: list[str]) -> list[dict]:
    if not path.is_file():
        raise IsaraError(f"{path}: file not found")
    rows = _records(path)
    if not rows:
        raise IsaraError(f"{path}: no rows")
    for col in columns:
        if col not in rows[0]:
            raise IsaraError(f"{path}: missing column '{col}' (columns: {', '.join(map(str, rows[0]))})")
    return rows


def load_pairs(path: Path, question: str, answer: str) -> pl.DataFrame:
    """Rows of (question, answer) with one-line errors naming the file, row or column."""
    rows = _rows(path, [question, answer])
    out = [
        (_text(path, n, question, row.get(question)), _text(path, n, answer, row.get(answer)))
        for n, row in enumerate(rows, start=1)
    ]
    return pl.DataFrame(
        {
            "sample_id": [schema.text_id(q, a) for q, a in out],
            "question": [q for q, _ in out],
            "answer": [a for _, a in out],
            "origin": ["seed"] * len(out),
            "source": [path.name] * len(out),
        },
        schema=schema.SEED,
    )


def import_prompts(path: Path, out: Path, prompt: str, expect: str, reference: str | None, suite: str) -> int:
    """Eval prompts of a domain of one's own: what a good answer does (`expect`) and an optional reference."""
    if expect not in schema.EXPECT:
        raise IsaraError(f"--expect {expect}: not one of {', '.join(schema.EXPECT)}")
    rows = _rows(path, [prompt] + ([reference] if reference else []))
    prompts, refs, seen = [], [], {}
    for n, row in enumerate(rows, start=1):
        text = _text(path, n, prompt, row.get(prompt))
        if norm(text) in seen:
            raise IsaraError(f"{path}: row {n}: duplicate prompt (same as row {seen[norm(text)]})")
        seen[norm(text)] = n
        prompts.append(text)
        refs.append([_text(path, n, reference, row.get(reference))] if reference else [])
    df = pl.DataFrame(
        {
            "prompt_id": [schema.text_id(suite, t) for t in prompts],
            "prompt": prompts,
            "suite": [suite] * len(prompts),
            "category": [suite] * len(prompts),
            "expect": [expect] * len(prompts),
            "references": refs,
            "incorrect": [[] for _ in prompts],
        },
        schema=schema.EVAL_PROMPTS,
    )
    schema.write(df, out, schema.EVAL_PROMPTS)
    return df.height


def check_seed(seed: pl.DataFrame, contexts: int, max_seed_rows: int, name: str) -> None:
    """Checks any seed must pass before the loop starts from it."""
    if seed.height < contexts:
        raise IsaraError(f"{name}: {seed.height} rows, fewer than contexts={contexts}")
    if seed.height > max_seed_rows:
        raise IsaraError(f"{name}: {seed.height} rows, more than data.max_seed_rows={max_seed_rows}")
    seen: dict[str, int] = {}
    for n, q in enumerate(seed["question"], start=1):
        if not q or not q.strip():
            raise IsaraError(f"{name}: row {n}: blank question")
        key = norm(q)
        if key in seen:
            raise IsaraError(f"{name}: row {n}: duplicate question (same as row {seen[key]})")
        seen[key] = n


def import_seed(path: Path, out: Path, question: str, answer: str, contexts: int, max_seed_rows: int) -> int:
    seed = load_pairs(path, question, answer)
    check_seed(seed, contexts, max_seed_rows, str(path))
    schema.write(seed, out, schema.SEED)
    return seed.height
