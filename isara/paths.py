"""Where each iteration's artifacts live (dvc.yaml names the same paths), and writing them atomically."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from isara.errors import IsaraError

if TYPE_CHECKING:
    from isara.config import Iteration

JUDGES = Path("models/judges")
EVAL_DATA = Path("data/eval")
EVAL_METRICS = Path("metrics/eval")
BASE = "it0"  # the base model and the seed pool: what the first iteration starts from
MATCHED = "sft_matched"  # the schedule-matched SFT control: models/sft_matched/<round>


def data(run: str) -> Path:
    return Path(f"data/{run}")


def model(run: str) -> Path:
    return Path(f"models/{run}")


def metrics(run: str) -> Path:
    return Path(f"metrics/{run}")


def spec(iterations: dict[str, Iteration], run: str) -> tuple[Iteration, str]:
    """An iteration's params and the name of the run it starts from (it0 = base model and seed)."""
    it = iterations.get(run)
    if it is None:
        raise IsaraError(f"--run {run}: params.yaml has no iterations.{run}")
    return it, f"it{it.prev}"


def isara_rounds(iterations: dict[str, Iteration]) -> dict[str, Path]:
    """ISARA's rounds, in order, each with the model its schedule-matched SFT control starts from.

    A round is an iteration named it<k> that extends no other run and proposes propose.n (scale 1):
    the one-shot baseline (scale 2, extends it1) is not one. Round k's control continues round
    prev's control (the base model for prev 0); a round whose prev is not a round has none.
    """
    out: dict[str, Path] = {}
    for name, it in sorted(iterations.items(), key=lambda kv: kv[1].k):  # prev < k: its round comes first
        if re.fullmatch(r"it\d+", name) and it.extends == BASE and it.scale == 1:
            if it.prev == 0 or f"it{it.prev}" in out:
                out[name] = model(BASE if it.prev == 0 else f"{MATCHED}/it{it.prev}")
    return out


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` to write a file or a folder to; renamed into place on success.

    An interrupted stage therefore never leaves a truncated artifact that DVC could take for a result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and path.is_dir():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: dict) -> None:
    """Metrics JSON, sorted keys, written atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    import polars as pl

    with atomic(path) as tmp:
        pl.DataFrame(rows).write_csv(tmp)
