"""Where each iteration's artifacts live; dvc.yaml names the same paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

from isara.config import Params
from isara.errors import IsaraError


def data(k: int) -> Path:
    return Path(f"data/it{k}")


def model(k: int) -> Path:
    return Path(f"models/it{k}")


def metrics(k: int) -> Path:
    return Path(f"metrics/it{k}")


def prev_of(params: Params, k: int) -> int:
    """The predecessor of iteration k, as params.yaml declares it."""
    it = params.iterations.get(f"it{k}")
    if it is None:
        raise IsaraError(f"--iteration {k}: params.yaml has no iterations.it{k}")
    return it.prev


def write_json(path: Path, obj: dict) -> None:
    """Metrics JSON, sorted keys, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_csv(path: Path, rows: list[dict]) -> None:
    import polars as pl

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pl.DataFrame(rows).write_csv(tmp)
    os.replace(tmp, path)
