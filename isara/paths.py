"""Where each iteration's artifacts live; dvc.yaml names the same paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

from isara.config import Iteration, Params
from isara.errors import IsaraError


def data(run: str) -> Path:
    return Path(f"data/{run}")


def model(run: str) -> Path:
    return Path(f"models/{run}")


def metrics(run: str) -> Path:
    return Path(f"metrics/{run}")


def spec(params: Params, run: str) -> tuple[Iteration, str]:
    """An iteration's params and the name of the run it starts from (it0 = base model and seed)."""
    it = params.iterations.get(run)
    if it is None:
        raise IsaraError(f"--run {run}: params.yaml has no iterations.{run}")
    return it, f"it{it.prev}"


def write_text(path: Path, text: str) -> None:
    """A text file written atomically: a temporary name in the same folder, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: dict) -> None:
    """Metrics JSON, sorted keys, written atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    import polars as pl

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pl.DataFrame(rows).write_csv(tmp)
    os.replace(tmp, path)
