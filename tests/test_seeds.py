"""`isara seed import` through the console script: good seeds in every format, and malformed ones."""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
import yaml

from isara import schema
from isara.schema import norm
from tests.conftest import REPO, error_line, isara

MALFORMED = Path(__file__).parent / "malformed"

# Real-looking pairs with the awkward parts a seed file has: commas, quotes, a newline, non-ASCII,
# and (in JSON) a line separator U+2028 that str.splitlines() would wrongly split a JSON line on.
PAIRS = [
    ("Why do people say all women are bad drivers?", "That is a stereotype; skill varies by person."),
    ("Is it fair to judge someone by their accent?", 'No. As the saying goes, "don\'t judge a book".'),
    ("Should a landlord refuse tenants of one religion?", "No, that is discrimination.\nIt is also illegal."),
    ("¿Es justo juzgar a alguien por su acento?", "No. Un acento dice de dónde es alguien, nada más."),
    (
        "Are older workers worse at learning new tools?",
        "No.\u2028Age alone does not predict how fast one learns.",
    ),
]


def _write(path: Path, pairs: list[tuple[str, str]], q: str = "question", a: str = "answer") -> Path:
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writerow([q, a])
            writer.writerows(pairs)
    elif path.suffix == ".jsonl":
        lines = [json.dumps({q: qq, a: aa, "id": i}, ensure_ascii=False) for i, (qq, aa) in enumerate(pairs)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        pl.DataFrame({q: [p[0] for p in pairs], a: [p[1] for p in pairs]}).write_parquet(path)
    return path


def _import(src: Path, out: Path, params: Path, *extra: str):
    return isara("seed", "import", src, "--out", out, "--params", params, *extra)


@pytest.mark.model
@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl", "parquet"])
def test_good_seed_imports(ext: str, tmp_path: Path, seed_params: Path) -> None:
    src = _write(tmp_path / f"seed.{ext}", PAIRS)
    out = tmp_path / "out" / "seed.parquet"
    result = _import(src, out, seed_params)
    assert result.returncode == 0, result.stderr
    assert f"({len(PAIRS)} rows)" in result.stdout
    seed = schema.read(out, schema.SEED)  # validates the schema on read
    assert pl.read_parquet(out).schema == pl.Schema(schema.SEED)
    assert seed["question"].to_list() == [q for q, _ in PAIRS]
    assert seed["answer"].to_list() == [a for _, a in PAIRS]
    assert seed["sample_id"].to_list() == [schema.text_id(q, a) for q, a in PAIRS]
    assert set(seed["origin"]) == {"seed"} and set(seed["source"]) == {src.name}


@pytest.mark.model
def test_sample_id_is_stable_across_formats_and_padding(tmp_path: Path, seed_params: Path) -> None:
    padded = [(f"  {q}\n", f"\t{a}  ") for q, a in PAIRS]  # surrounding whitespace is not content
    ids = []
    for name, pairs in (("a.csv", PAIRS), ("b.jsonl", padded), ("c.parquet", PAIRS)):
        out = tmp_path / f"{name}.out.parquet"
        assert _import(_write(tmp_path / name, pairs), out, seed_params).returncode == 0
        ids.append(pl.read_parquet(out)["sample_id"].to_list())
    assert ids[0] == ids[1] == ids[2]
    assert len(set(ids[0])) == len(PAIRS)


@pytest.mark.model
def test_imported_seed_passes_validate(tmp_path: Path, seed_params: Path) -> None:
    out = tmp_path / "seeds" / "custom.parquet"
    assert _import(_write(tmp_path / "seed.csv", PAIRS), out, seed_params).returncode == 0
    raw = yaml.safe_load(seed_params.read_text(encoding="utf-8"))
    raw["data"]["seed_file"] = "seeds/custom.parquet"  # relative to the params file, like data.raw_dir
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw), encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(REPO / "data" / "raw")
    result = isara("validate", "--params", params)
    assert result.returncode == 0, result.stderr


@pytest.mark.model
def test_custom_column_names(tmp_path: Path, seed_params: Path) -> None:
    src = _write(tmp_path / "seed.csv", PAIRS, q="prompt", a="response")
    out = tmp_path / "out.parquet"
    line = error_line(_import(src, out, seed_params))
    assert str(src) in line and "missing column 'question'" in line and "prompt, response" in line
    assert not out.exists()
    result = _import(src, out, seed_params, "--question", "prompt", "--answer", "response")
    assert result.returncode == 0, result.stderr
    assert pl.read_parquet(out)["question"].to_list() == [q for q, _ in PAIRS]


@pytest.mark.model
@pytest.mark.parametrize("name", ["bom.csv", "bom.jsonl"])
def test_byte_order_mark_is_accepted(name: str, tmp_path: Path, seed_params: Path) -> None:
    out = tmp_path / "out.parquet"
    result = _import(MALFORMED / name, out, seed_params)
    assert result.returncode == 0, result.stderr
    seed = pl.read_parquet(out)
    assert seed.height == 5
    assert seed["question"][0] == "Why do people say all women are bad drivers?"  # no "\ufeff" left


# file in tests/malformed -> text the one error line must contain besides the file's path
BAD_SEEDS = {
    "empty.csv": ["no rows"],
    "empty.jsonl": ["no rows"],
    "empty.parquet": ["no rows"],
    "blank_lines_only.jsonl": ["no rows"],
    "header_only.csv": ["no rows"],
    "missing_answer_column.csv": ["missing column 'answer'"],
    "misnamed_column.csv": ["missing column 'answer'", "respnse"],
    "capitalised_columns.jsonl": ["missing column 'question'", "Question, Answer"],
    "missing_column.parquet": ["missing column 'answer'"],
    "blank_question.csv": ["row 3", "'question' is blank"],
    "blank_answer.jsonl": ["row 2", "'answer' is blank"],
    "whitespace_answer.tsv": ["row 4", "'answer' is blank"],
    "duplicate_question.csv": ["row 5", "duplicate question", "row 1"],  # case and spacing differ
    "latin1.csv": ["line 3", "not valid UTF-8"],
    "utf16.csv": ["line 1", "not valid UTF-8"],
    "number_answer.jsonl": ["row 3", "'answer' is not text", "int"],
    "null_question.jsonl": ["row 1", "'question' is not text"],
    "list_answer.jsonl": ["row 2", "'answer' is not text", "list"],
    "int_answer.parquet": ["row 1", "'answer' is not text", "int"],
    "lone_surrogate.jsonl": ["row 2", "'question'", "surrogate"],
    "too_few_rows.csv": ["3 rows", "contexts=4"],
    "too_many_rows.csv": ["51 rows", "max_seed_rows=50"],
    "enormous_answer.csv": ["row 2", "'answer'", "characters"],
    "json_array.json": ["line 1", "not valid JSON"],
    "json_array_one_line.jsonl": ["line 1", "expected a JSON object"],
    "truncated.jsonl": ["line 4", "not valid JSON"],
    "string_line.jsonl": ["line 3", "expected a JSON object"],
    "unquoted_comma.csv": ["row 2", "fields"],  # would silently cut the answer at the comma
    "short_row.csv": ["row 3", "fields"],
    "seed.txt": ["unsupported seed format '.txt'"],
    "seed.xlsx": ["unsupported seed format '.xlsx'"],
    "corrupt.parquet": ["not a readable parquet file"],
    "truncated.parquet": ["not a readable parquet file"],
}


def test_every_malformed_file_is_covered() -> None:
    on_disk = {p.name for p in MALFORMED.iterdir()} - {"bom.csv", "bom.jsonl"}
    assert on_disk == set(BAD_SEEDS)


@pytest.fixture(scope="module")
def bad_imports(tmp_path_factory: pytest.TempPathFactory, seed_params: Path) -> dict:
    """Every malformed import, run side by side: each is a fresh process that mostly waits on imports."""
    root = tmp_path_factory.mktemp("bad_imports")

    def run(name: str):
        out = root / name / "seed.parquet"
        return name, (_import(MALFORMED / name, out, seed_params), out)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, BAD_SEEDS))


@pytest.mark.model
@pytest.mark.parametrize("name", BAD_SEEDS)
def test_malformed_seed_fails_in_one_line_and_writes_nothing(name: str, bad_imports: dict) -> None:
    src = MALFORMED / name
    result, out = bad_imports[name]
    line = error_line(result)
    assert str(src) in line
    for text in BAD_SEEDS[name]:
        assert text in line
    assert not out.parent.exists()  # neither the seed nor a temporary file nor its folder


@pytest.mark.model
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_seed_path_that_is_not_a_file(kind: str, tmp_path: Path, seed_params: Path) -> None:
    src = tmp_path / "seed.csv"
    if kind == "directory":
        src.mkdir()
    out = tmp_path / "out.parquet"
    line = error_line(_import(src, out, seed_params))
    assert str(src) in line and "not found" in line
    assert not out.exists()


@pytest.mark.model
def test_duplicate_check_uses_the_shared_normalisation(tmp_path: Path, seed_params: Path) -> None:
    pairs = [*PAIRS, (" WHY do people say  all women are BAD drivers? ", "A second answer.")]
    assert norm(pairs[-1][0]) == norm(pairs[0][0])
    out = tmp_path / "out.parquet"
    line = error_line(_import(_write(tmp_path / "seed.parquet", pairs), out, seed_params))
    assert "row 6" in line and "same as row 1" in line
    assert not out.exists()
