"""Domains beside the default: a folder with its own params.yaml and a dvc.yaml derived from the root one.

The root `dvc repro` runs the safety default; `dvc repro domains/<name>/dvc.yaml` runs a domain
whose seed file, eval prompts and judges its params name. Nothing in the loop branches on the
domain: the folder's dvc.yaml is the root pipeline with the code and the shared raw data pointing
back to the root, and everything the domain produces (models, data, metrics, report) stays inside
the folder, and the schedule-matched SFT control runs over the domain's own ISARA rounds. `isara
domain NAME --refresh` rewrites the folder's dvc.yaml after the root one changes (a test fails
until it is done); its params.yaml is left alone.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from isara.errors import IsaraError
from isara.paths import MATCHED, isara_rounds, write_text

ROOT = Path(".")
SHARED = ("stages/", "isara/", "data/raw")  # what a domain reads from the root, not from its folder
ROOT_ONLY = ("prepare_data",)  # prepared seeds and eval splits of every domain are the root's outputs
DATA_PATHS = ("raw_dir", "prepared_dir", "seed_file", "eval_file")
HEADER = (
    "# Written by `isara domain {name}`; dvc.yaml is derived from the root one: do not edit it,\n"
    "# run `isara domain {name} --refresh` after the root dvc.yaml changes.\n"
    "# Run with: dvc repro {folder}/dvc.yaml\n"
)


def derive(pipeline: dict, up: str, iterations: dict | None = None) -> dict:
    """The root pipeline as seen from a folder `up` (e.g. "../../") below the root.

    With the domain's `iterations`, the schedule-matched SFT control follows its own ISARA rounds.
    """
    out = copy.deepcopy(pipeline)
    out["stages"] = {name: _stage(body, up) for name, body in pipeline["stages"].items() if name not in ROOT_ONLY}
    if iterations is not None and MATCHED in out["stages"]:
        _matched_rounds(out["stages"], iterations)
    return out


def _matched_rounds(stages: dict, iterations: dict) -> None:
    """sft_matched over the domain's rounds, and its last round evaluated as the baseline sft_matched."""
    rounds = isara_rounds(iterations)
    baselines = stages.get("baseline", {}).get("foreach", {})
    if not rounds:  # no ISARA round to match: no control
        del stages[MATCHED]
        baselines.pop(MATCHED, None)
        return
    stages[MATCHED]["foreach"] = {name: {"init": init.as_posix()} for name, init in rounds.items()}
    if MATCHED in baselines:
        baselines[MATCHED] = {"model": f"models/{MATCHED}/{list(rounds)[-1]}"}


def _stage(body: dict, up: str) -> dict:
    body = copy.deepcopy(body)
    spec = body["do"] if "foreach" in body else body
    spec["cmd"] = spec["cmd"].replace("python stages/", f"python {up}stages/")
    spec["deps"] = [up + d if isinstance(d, str) and d.startswith(SHARED) else d for d in spec.get("deps", [])]
    return body


def apply_overrides(params: dict, overrides: dict) -> dict:
    """A copy of params with each dotted key (train.lr) set; a missing section is a one-line error."""
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise IsaraError(f"--set {dotted}: params.yaml has no section '{p}'")
            node = node[p]
        node[leaf] = value
    return out


def domain_params(params: dict, up: str, seed_file: str, eval_file: str, overrides: dict) -> dict:
    """Root params, the overrides, the domain's files; then every data path as seen from the folder.

    All paths (in --seed, --eval and --set data.*) are given relative to the root.
    """
    out = apply_overrides(params, overrides)
    data = out["data"]
    data["seed_file"], data["eval_file"] = seed_file, eval_file
    for key in DATA_PATHS:
        if not Path(data[key]).is_absolute():
            data[key] = up + data[key]
    return out


def refresh(name: str, root: Path = ROOT) -> Path:
    """Rewrite an existing domain's dvc.yaml from the root one; its params.yaml is left as it is."""
    folder = root / "domains" / name
    if not (folder / "params.yaml").is_file():
        raise IsaraError(f"{folder}: no such domain (create it with --seed and --eval)")
    from isara.config import load_params

    up = os.path.relpath(root, folder).replace(os.sep, "/") + "/"
    iterations = load_params(folder / "params.yaml").iterations
    pipeline = derive(yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")), up, iterations)
    header = HEADER.format(name=name, folder=f"domains/{name}")
    write_text(folder / "dvc.yaml", header + yaml.safe_dump(pipeline, sort_keys=False, width=120))
    return folder


def create(name: str, seed_file: str, eval_file: str, overrides: dict, root: Path = ROOT) -> Path:
    """Write domains/<name>/dvc.yaml and params.yaml; file paths are given relative to the root."""
    from isara.config import parse_params

    if not name.replace("_", "").replace("-", "").isalnum():
        raise IsaraError(f"domain name {name!r}: use letters, digits, '-' and '_'")
    for needed in ("dvc.yaml", "params.yaml"):
        if not (root / needed).is_file():
            raise IsaraError(f"{root / needed}: not found (run isara domain from the project root)")
    root_params = parse_params(yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}, "params.yaml")
    root_params = root_params.model_dump(mode="json")  # every key present, defaults included
    for what, path in (("--seed", seed_file), ("--eval", eval_file)):
        if not (root / path).is_file() and not Path(path).parent == Path(root_params["data"]["prepared_dir"]):
            raise IsaraError(f"{what} {path}: file not found")
    folder = root / "domains" / name
    up = os.path.relpath(root, folder).replace(os.sep, "/") + "/"
    params = domain_params(root_params, up, seed_file, eval_file, overrides)
    parse_params(params, f"domains/{name}/params.yaml")  # a wrong override fails here, before any write
    folder.mkdir(parents=True, exist_ok=True)
    header = HEADER.format(name=name, folder=f"domains/{name}")
    write_text(folder / "params.yaml", header + yaml.safe_dump(params, sort_keys=False, width=120))
    return refresh(name, root)
