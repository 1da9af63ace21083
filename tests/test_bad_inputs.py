"""Bad artifacts and eval files reach a stage: one error line naming the file, exit 1, nothing written.

The seed-file corpus is in test_seeds.py (tests/malformed/) and params in test_config.py; these
are the files a stage reads that a user or a crashed run could have damaged.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

from isara import schema
from tests.conftest import REPO, base_params

PYTHON = REPO / ".venv" / "bin" / "python"


def _frame(sch: dict, n: int = 3) -> pl.DataFrame:
    """n valid rows of a schema (distinct strings, zeros, empty lists)."""
    cols = {}
    for name, dtype in sch.items():
        if dtype == pl.Utf8:
            cols[name] = [f"{name} text number {i} with several words" for i in range(n)]
        elif isinstance(dtype, pl.List):
            cols[name] = [[] for _ in range(n)]
        else:
            cols[name] = [0] * n
    return pl.DataFrame(cols).cast(sch)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A workspace with the committed params and valid it0/it1 artifacts of the loop."""
    params = base_params()
    params["data"]["eval_file"] = "evals.parquet"
    params["data"]["seed_file"] = "seed.parquet"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    pool = _frame(schema.POOL).with_columns(pl.lit("seed").alias("origin"))
    schema.write(pool, tmp_path / "data/it0/pool.parquet", schema.POOL)
    schema.write(_frame(schema.SEED), tmp_path / "seed.parquet", schema.SEED)
    schema.write(_frame(schema.EMBEDDINGS), tmp_path / "data/it0/embeddings.parquet", schema.EMBEDDINGS)
    schema.write(_frame(schema.LABELED), tmp_path / "data/it1/labeled.parquet", schema.LABELED)
    schema.write(_frame(schema.PROPOSED), tmp_path / "data/it1/proposed.parquet", schema.PROPOSED)
    evals = _frame(schema.EVAL_PROMPTS).with_columns(pl.lit("harmful").alias("expect"))
    schema.write(evals, tmp_path / "evals.parquet", schema.EVAL_PROMPTS)
    return tmp_path


def stage(work: Path, script: str, *args: str) -> str:
    """Run a stage script; it must fail with exactly one error line and no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(PYTHON), str(REPO / "stages" / script), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("isara: error: ")]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0]), done.stderr
    return errors[0]


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def drop_column(path: Path, column: str) -> None:
    pl.read_parquet(path).drop(column).write_parquet(path)


def retype_column(path: Path, column: str) -> None:
    df = pl.read_parquet(path)
    df.with_columns(pl.Series(column, [f"word{i}" for i in range(df.height)])).write_parquet(path)


def garbage(path: Path) -> None:
    path.write_bytes(b"PAR1 this is not parquet at all \x00\xff")


CASES = [
    # (stage script and args, file to damage, damage, words the error must contain)
    (("filter.py", "--run", "it1"), "data/it1/labeled.parquet", garbage, "not a readable parquet file"),
    (("filter.py", "--run", "it1"), "data/it1/labeled.parquet", truncate, "not a readable parquet file"),
    (("filter.py", "--run", "it1"), "data/it1/labeled.parquet", lambda p: p.write_bytes(b""), "not a readable"),
    (("filter.py", "--run", "it1"), "data/it1/labeled.parquet", lambda p: drop_column(p, "answer"), "answer"),
    (("filter.py", "--run", "it1"), "data/it0/pool.parquet", lambda p: retype_column(p, "iteration"), "wrong type"),
    (("filter.py", "--run", "it1"), "data/it0/pool.parquet", lambda p: p.unlink(), "file not found"),
    (("merge.py", "--run", "it1"), "data/it1/filtered.parquet", garbage, "not a readable parquet file"),
    (("embed.py", "--run", "it1"), "data/it1/proposed.parquet", lambda p: drop_column(p, "question"), "question"),
    (("filter.py", "--run", "it9"), "params.yaml", lambda p: None, "no iterations.it9"),
    (("evaluate.py", "--name", "x", "--model", "models/it0"), "evals.parquet", lambda p: p.unlink(), "not found"),
    (("evaluate.py", "--name", "x", "--model", "models/it0"), "evals.parquet", truncate, "not a readable"),
    (
        ("evaluate.py", "--name", "x", "--model", "models/it0"),
        "evals.parquet",
        lambda p: pl.read_parquet(p).head(0).write_parquet(p),
        "no eval prompts",
    ),
    (
        ("evaluate.py", "--name", "x", "--model", "models/it0"),
        "evals.parquet",
        lambda p: pl.read_parquet(p).with_columns(pl.lit("  ").alias("prompt")).write_parquet(p),
        "row 1: blank prompt",
    ),
    (
        ("evaluate.py", "--name", "x", "--model", "models/it0"),
        "evals.parquet",
        lambda p: pl.read_parquet(p).with_columns(pl.lit("harmless").alias("expect")).write_parquet(p),
        "expect is 'harmless'",
    ),
    (("evaluate.py", "--name", "x", "--model", "models/it0"), "models/judges", lambda p: None, "no trained judges"),
]


@pytest.mark.parametrize(("args", "target", "damage", "words"), CASES, ids=lambda v: getattr(v, "__name__", None))
def test_damaged_input_fails_on_one_line_and_writes_nothing(work, args, target, damage, words) -> None:
    if args[0] == "merge.py":
        schema.write(_frame(schema.FILTERED), work / "data/it1/filtered.parquet", schema.FILTERED)
    path = work / target
    damage(path)
    before = _files(work)
    line = stage(work, *args)
    assert words in line, line
    if target != "params.yaml":
        assert Path(target).name in line or target.split("/")[0] in line, line  # names the file
    assert _files(work) == before  # no output, no temporary file left behind


def test_corrupt_judges_fail_before_any_generation(work: Path) -> None:
    judges = work / "models/judges"
    judges.mkdir(parents=True)
    (judges / "judges.json").write_text("{not json", encoding="utf-8")
    (judges / "judges.safetensors").write_bytes(b"\x00" * 16)
    assert "judges.json: not a judge recipe" in stage(work, "evaluate.py", "--name", "x", "--model", "models/it0")
    (judges / "judges.json").write_text(
        json.dumps(
            {
                "embedder": "all-MiniLM-L6-v2",
                "harm": {"kind": "trained", "architecture": "cross_encoder"},
                "refusal": {"kind": "trained", "architecture": "mlp"},
            }
        )
    )
    assert "judges.safetensors: not a readable safetensors file" in stage(
        work, "evaluate.py", "--name", "x", "--model", "models/it0"
    )
    assert not (work / "data/eval").exists() and not (work / "metrics").exists()


def test_corrupt_index_and_missing_embeddings_fail_before_the_model_loads(work: Path) -> None:
    proposed = schema.read(work / "data/it1/proposed.parquet", schema.PROPOSED)
    cache = pl.DataFrame(
        {
            "text_id": [schema.text_id(q) for q in proposed["question"]],
            "model": ["all-MiniLM-L6-v2"] * proposed.height,
            "embedding": [[0.1, 0.2, 0.3, 0.4]] * proposed.height,
        }
    )
    schema.write(cache, work / "data/it1/embeddings.parquet", schema.EMBEDDINGS)
    schema.write(
        pl.DataFrame({"item": [0, 1, 2], "sample_id": ["a", "b", "c"]}),
        work / "data/it1/index_ids.parquet",
        schema.INDEX_IDS,
    )
    (work / "data/it1/index.ann").write_bytes(b"\x01\x02\x03")
    before = _files(work)
    assert "index.ann: not a readable Annoy index" in stage(work, "label.py", "--run", "it1")
    schema.write(cache.head(1), work / "data/it1/embeddings.parquet", schema.EMBEDDINGS)
    assert "embedding cache: no all-MiniLM-L6-v2 embedding of 2 text(s)" in stage(work, "label.py", "--run", "it1")
    assert _files(work) == before


def test_truncated_model_weights_fail_on_one_line(work: Path) -> None:
    folder = work / "models/it0"
    folder.mkdir(parents=True)
    tiny = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1}
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32, **tiny}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    schema.write(
        _frame(schema.TRAIN).with_columns(pl.lit(1.0).alias("weight")), work / "data/it1/train.parquet", schema.TRAIN
    )
    before = _files(work)
    assert "models/it0: cannot load model" in stage(work, "train.py", "--run", "it1")
    assert _files(work) == before
