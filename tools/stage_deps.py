"""Each stage's code deps and params, derived from the code rather than kept by hand.

    python tools/stage_deps.py            # check dvc.yaml: every stage lists exactly what its script reaches
    python tools/stage_deps.py --write    # rewrite the isara/ deps and the params of every stage in dvc.yaml

Code deps: every `isara/` module a stage script reaches through imports (at any depth, lazy imports
included), plus `isara/__init__.py`, which every such import runs. Params: every `params.<section>.<key>`
the script reads; library functions take sections and values, never the whole `params`, so the
script's reads are all the stage's reads. A section passed whole counts as all its keys. Keys that
change no byte of any artifact (NO_BYTES below) are left out of every stage, so setting them
reruns nothing. After --write, `isara domain NAME --refresh` carries the change into each domain.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Params that decide where or how fast work runs, never what it writes.
NO_BYTES = {
    "train.checkpoint_every": "a resumed training run ends with the same weights as an uninterrupted one (tested)",
    "scale.placement": "Ray actors run the batches this process planned, with their seeds (tested byte for byte); "
    "vLLM, whose texts depend on its batching, is refused on Ray",
    "scale.ray_address": "which Ray cluster runs the planned batches",
    "scale.ray_actors": "how many replicas share the planned batches",
    "scale.ray_threads": "threads per Ray actor: 1-thread actors write the bytes 2 threads write here (tested)",
}
ITERATION = "iterations.${key}"  # a foreach stage reads its own iteration's entry


def module_path(name: str) -> Path | None:
    """The file of an isara module name (isara.x), or None when it is not a module of ours."""
    parts = name.split(".")
    if parts[0] != "isara":
        return None
    file = ROOT.joinpath(*parts).with_suffix(".py")
    if file.is_file():
        return file
    package = ROOT.joinpath(*parts) / "__init__.py"
    return package if package.is_file() else None


def _shown(file: Path) -> str:
    return file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else str(file)


def hidden_imports(file: Path) -> list[str]:
    """Imports the walk cannot follow: relative ones and importlib calls, each a problem to fix."""
    found = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append(f"{_shown(file)}:{node.lineno}: a relative import; write it as `from isara...`")
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            found.append(f"{_shown(file)}:{node.lineno}: importlib.import_module; import the module by name")
    return found


def direct_imports(file: Path) -> set[Path]:
    """isara modules a file imports, anywhere in it (lazy imports inside functions too)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "isara":
                found.add(ROOT / "isara" / "__init__.py")
            path = module_path(name)
            if path is not None:
                found.add(path)
    return found


def closure(script: Path) -> set[str]:
    """Every isara module a script reaches, as paths from the project root."""
    seen: set[Path] = set()
    todo = list(direct_imports(script))
    while todo:
        file = todo.pop()
        if file not in seen:
            seen.add(file)
            todo.extend(direct_imports(file) - seen)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def _chain(node: ast.AST) -> list[str] | None:
    """['params', 'a', 'b'] for the expression params.a.b; None for anything else."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(names)]
    return None


def params_read(script: Path) -> tuple[set[str], list[str]]:
    """(params keys a stage script reads, problems): `params.a.b` reads a.b; `params.a` alone, all of a."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    reads, problems = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and "load_params" in ast.unparse(node.value):
            if [ast.unparse(t) for t in node.targets] != ["params"]:
                problems.append(f"line {node.lineno}: binds load_params() to another name than `params`")
        if isinstance(node, ast.Name) and node.id == "params" and id(node) not in inner:
            if not isinstance(node.ctx, ast.Store):
                problems.append(f"line {node.lineno}: uses `params` whole; pass the sections and values a step reads")
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain = _chain(node)
            if chain and chain[0] == "params":
                reads.add(".".join(chain[1:3]))
    return reads, sorted(problems, key=lambda p: int(p.split(":")[0].split()[1]))


def _fields() -> dict[str, list[str] | None]:
    """Top-level params keys: a section's field names, or None for a plain value."""
    from pydantic import BaseModel

    from isara.config import Params

    out: dict[str, list[str] | None] = {}
    for name, field in Params.model_fields.items():
        kind = field.annotation
        out[name] = list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    return out


def expand(keys: set[str], foreach: bool) -> set[str]:
    """Leaf keys: a section stands for all its fields; iterations for the stage's own entry."""
    fields, out = _fields(), set()
    for key in keys:
        top = key.split(".")[0]
        if top == "iterations":
            out.add(ITERATION if foreach else "iterations")
        elif "." not in key and fields.get(key):
            out.update(f"{key}.{f}" for f in fields[key])
        else:
            out.add(key)
    return out


def wanted_params(reads: set[str], foreach: bool) -> list[str]:
    """The params list a stage should have: whole sections where every key counts, else the keys."""
    fields, out = _fields(), []
    leaves = expand(reads, foreach) - NO_BYTES.keys()
    for top in sorted({k.split(".")[0] for k in leaves}):
        keys = sorted(k for k in leaves if k.split(".")[0] == top)
        whole = fields.get(top) and set(keys) == {f"{top}.{f}" for f in fields[top]}
        out += [top] if whole else keys
    return out


def script_of(cmd: str) -> Path:
    match = re.search(r"python (\S+\.py)", cmd)
    if not match:
        raise ValueError(f"no `python <script>.py` in cmd: {cmd}")
    return ROOT / match.group(1)


def stages(pipeline: dict) -> dict[str, tuple[dict, bool]]:
    """Stage name -> (its body, whether it is a foreach stage)."""
    return {
        name: (body["do"], True) if "foreach" in body else (body, False) for name, body in pipeline["stages"].items()
    }


def problems(pipeline: dict) -> list[str]:
    """What dvc.yaml gets wrong about each stage's code deps and params, one line each."""
    out = []
    for name, (body, foreach) in stages(pipeline).items():
        script = script_of(body["cmd"])
        listed = {d for d in body.get("deps", []) if isinstance(d, str) and d.startswith("isara/")}
        reached = closure(script)
        for file in [script, *(ROOT / m for m in sorted(reached))]:
            out += [f"{name}: {line}" for line in hidden_imports(file)]
        out += [f"{name}: deps lack {m}, which {script.name} reaches by imports" for m in sorted(reached - listed)]
        out += [f"{name}: deps list {m}, which {script.name} does not reach" for m in sorted(listed - reached)]
        reads, bad = params_read(script)
        out += [f"{name}: {script.name} {b}" for b in bad]
        declared = {str(p) for p in body.get("params", [])}
        for key in sorted(expand(declared, foreach) & NO_BYTES.keys()):
            out.append(f"{name}: params include {key}, which changes no byte ({NO_BYTES[key]})")
        have, want = expand(declared, foreach) - NO_BYTES.keys(), expand(reads, foreach) - NO_BYTES.keys()
        out += [f"{name}: params lack {k}, which {script.name} reads" for k in sorted(want - have)]
        out += [f"{name}: params list {k}, which {script.name} does not read" for k in sorted(have - want)]
    return out


def write(path: Path) -> None:
    """Rewrite dvc.yaml's isara/ deps and params lists from the code, keeping everything else."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)  # the style dvc.yaml is written in
    doc = yaml.load(path.read_text(encoding="utf-8"))
    for body, foreach in stages(doc).values():
        deps = body.get("deps", [])
        code = [d for d in deps if isinstance(d, str) and d.startswith("isara/")]
        at = (
            deps.index(code[0])
            if code
            else next((i + 1 for i, d in enumerate(deps) if str(d).startswith("stages/")), 0)
        )
        for d in code:
            deps.remove(d)
        for offset, module in enumerate(sorted(closure(script_of(body["cmd"])))):
            deps.insert(at + offset, module)
        reads, _ = params_read(script_of(body["cmd"]))
        keys = wanted_params(reads, foreach)
        if "params" in body:
            body["params"] = keys
        elif keys:  # right after the deps, where a reader looks for it
            body.insert(list(body).index("deps") + 1, "params", keys)
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(doc, fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite dvc.yaml instead of checking it")
    ap.add_argument("--pipeline", type=Path, default=ROOT / "dvc.yaml")
    args = ap.parse_args()
    if args.write:
        write(args.pipeline)
    import yaml

    found = problems(yaml.safe_load(args.pipeline.read_text(encoding="utf-8")))
    print("\n".join(found) if found else f"{args.pipeline}: every stage lists the code and params it reads")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
