"""Everything a rerun may reuse: finished generation batches, rows of an extended run, training checkpoints.

Each is keyed by what decides its content, so a resumed or extended run can only reuse what an
uninterrupted run would have produced itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import polars as pl

from isara.errors import IsaraError
from isara.paths import atomic

log = logging.getLogger(__name__)

SCRATCH = Path(".isara/scratch")


class Scratch:
    """Finished batches of one generation job, persisted so a killed stage resumes where it stopped.

    The folder is keyed by everything that determines the output (model hash, prompts, config,
    seed), so a resumed run can only reuse batches that an uninterrupted run would have produced.
    """

    def __init__(self, root: Path | None, *parts: str) -> None:
        self.dir = root / hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24] if root else None

    def get(self, b: int) -> list[str] | None:
        f = self.dir / f"batch{b:05d}.json" if self.dir else None
        return json.loads(f.read_text(encoding="utf-8")) if f and f.is_file() else None

    def put(self, b: int, texts: list[str]) -> None:
        if self.dir:
            with atomic(self.dir / f"batch{b:05d}.json") as tmp:
                tmp.write_text(json.dumps(texts), encoding="utf-8")

    def clear(self) -> None:
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- a run that extends another (the one-shot baseline reads it1's rows) ---------------------------


def part_seed(seed: int, start: int) -> int:
    """Sampling seed of the rows from `start` on: a run that extends another samples apart from it."""
    return seed + 1000 * start


def reused_rows(done: pl.DataFrame, n: int, ref: str, what: str, **expected: list) -> int:
    """How many leading rows `done` (the extended run's output) supplies; checks they are ours to reuse."""
    m = done.height
    if m > n:
        raise IsaraError(f"{what}: the extended run has {m} rows, more than the {n} this run makes")
    if m and (set(done["model_ref"]) != {ref} or any(done[c].to_list() != v[:m] for c, v in expected.items())):
        raise IsaraError(f"{what}: the extended run's rows came from another model, pool or seed; rerun it")
    return m


# --- training checkpoints ---------------------------------------------------------------------------

STATE, META = "state.safetensors", "state.json"


def save_checkpoint(folder: Path, model, opt, step: int, history: list[dict], sched=None) -> None:
    """Trainable weights, optimizer moments, learning-rate schedule, RNG and loss log after `step` steps.

    Not through paths.atomic: the last good checkpoint stays (as .old) until the new one is in place,
    so a kill at any point leaves one that load_checkpoint can resume from.
    """
    import torch
    from safetensors.torch import save_file

    tensors = {f"param.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    state = opt.state_dict()
    for i, slots in state["state"].items():
        tensors.update({f"opt.{i}.{name}": t.cpu().contiguous() for name, t in slots.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, tmp / STATE)
    meta = {"step": step, "history": history, "param_groups": state["param_groups"]}
    meta["scheduler"] = None if sched is None else sched.state_dict()  # plain numbers: its position and rates
    (tmp / META).write_text(json.dumps(meta), encoding="utf-8")
    old = folder.with_name(f".{folder.name}.old")  # the last good checkpoint stays until the new one is in
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, model, opt, sched=None) -> tuple[int, list[dict]]:
    """Restore what save_checkpoint wrote; (0, []) when there is none or it does not fit this run."""
    import torch
    from safetensors.torch import load_file

    old = folder.with_name(f".{folder.name}.old")  # a kill between the two renames of a save
    found = next((f for f in (folder, old) if (f / META).is_file()), None)
    if found is None:
        return 0, []
    try:
        tensors = load_file(found / STATE)
        meta = json.loads((found / META).read_text(encoding="utf-8"))
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for n, p in params.items():  # everything checked before anything is overwritten
            if tensors[f"param.{n}"].shape != p.shape:
                raise ValueError(f"{n}: shape {tuple(tensors[f'param.{n}'].shape)}, not {tuple(p.shape)}")
        slots: dict[int, dict] = {}
        for key, t in tensors.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                slots.setdefault(int(i), {})[name] = t
        if (sched is None) != (meta.get("scheduler") is None):
            raise ValueError("saved with another learning-rate schedule")
        opt.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
        if sched is not None:
            sched.load_state_dict(meta["scheduler"])
    except Exception as err:  # a damaged or foreign checkpoint: start over rather than fail or mix
        log.warning(
            "ignoring the training checkpoint in %s (%s: %s); starting from step 0", found, type(err).__name__, err
        )
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        return 0, []
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[f"param.{n}"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    log.info("resumed training from the checkpoint after step %d in %s", meta["step"], found)
    return meta["step"], meta["history"]


def code_ref() -> str:
    """The code and libraries that shape a training step: a checkpoint from other code is not resumed."""
    from importlib.metadata import version

    here = Path(__file__).parent
    parts = [(here / f).read_bytes() for f in ("train.py", "loss.py", "icl.py", "distributed.py", "resume.py")]
    parts += [version(p).encode() for p in ("torch", "transformers", "peft")]
    return hashlib.sha256(b"\x1f".join(parts)).hexdigest()[:16]
