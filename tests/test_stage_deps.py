"""Content addressing follows the code: each stage lists the modules it imports and the params it reads.

Also the house rules that keep those lists checkable: no import circles, library functions that take
sections and values rather than the whole params, and one home for every default.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from isara import config
from tests.conftest import REPO
from tools import stage_deps

GENERATION_STAGES = ("propose", "label", "evaluate", "baseline", "icl_baseline")


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


def test_every_stage_lists_exactly_the_code_and_params_it_reads(pipeline: dict) -> None:
    found = stage_deps.problems(pipeline)
    assert not found, "dvc.yaml has drifted from the code; run `python tools/stage_deps.py --write`:\n" + "\n".join(
        found
    )


def test_a_missing_module_or_param_is_named_with_its_stage(pipeline: dict) -> None:
    broken = copy.deepcopy(pipeline)
    label = broken["stages"]["label"]["do"]
    label["deps"].remove("isara/index.py")
    label["params"].remove("scale.engine")
    broken["stages"]["train"]["do"]["params"].append("train.checkpoint_every")
    broken["stages"]["filter"]["do"]["params"].append("gamma")
    found = stage_deps.problems(broken)
    assert "label: deps lack isara/index.py, which label.py reaches by imports" in found
    assert "label: params lack scale.engine, which label.py reads" in found
    assert any(line.startswith("train: params include train.checkpoint_every, which changes no byte") for line in found)
    assert "filter: params list gamma, which filter.py does not read" in found
    assert len(found) == 4, found


def test_the_import_walk_follows_lazy_imports_and_the_params_walk_refuses_whole_params(tmp_path: Path) -> None:
    script = tmp_path / "stage.py"
    script.write_text(
        "from isara.config import load_params\n"
        "def main():\n"
        "    from isara import rouge\n"
        "    params = load_params()\n"
        "    rouge.rouge_l(params.model.base, str(params.filter))\n"
        "    helper(params)\n"
        "    from .x import y\n"
        "    cfg = load_params()\n",
        encoding="utf-8",
    )
    assert {"isara/rouge.py", "isara/config.py", "isara/errors.py", "isara/__init__.py"} <= stage_deps.closure(script)
    reads, problems = stage_deps.params_read(script)
    assert reads == {"model.base", "filter"}
    assert problems == [
        "line 6: uses `params` whole; pass the sections and values a step reads",
        "line 8: binds load_params() to another name than `params`",
    ]
    assert stage_deps.hidden_imports(script) == [f"{script}:7: a relative import; write it as `from isara...`"]
    assert stage_deps.expand({"filter"}, foreach=False) == {"filter.rouge_threshold", "filter.min_words"}


def test_every_generation_stage_reruns_when_the_engine_changes_and_none_for_the_placement(pipeline: dict) -> None:
    for name, body in pipeline["stages"].items():
        listed = stage_deps.expand(set(body.get("do", body).get("params", [])), "foreach" in body)
        assert ("scale.engine" in listed) == (name in GENERATION_STAGES), name
        assert not listed & stage_deps.NO_BYTES.keys(), name


def test_the_package_has_no_import_circle() -> None:
    graph = {p.stem: {d.stem for d in stage_deps.direct_imports(p)} - {p.stem} for p in (REPO / "isara").glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    circles = sorted(m for m in graph if reaches(m, m, set()))
    assert not circles, f"modules on an import circle: {circles}"


def test_only_the_command_line_handles_the_whole_params() -> None:
    """Steps take the sections and values they read, so a stage's reads are visible in its script."""
    users = set()
    for module in sorted((REPO / "isara").glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.Name) and n.id == "Params" for n in ast.walk(tree)) or any(
            isinstance(n, ast.alias) and n.name == "Params" for n in ast.walk(tree)
        ):
            users.add(module.stem)
    assert users == {"config", "validate", "study"}  # study: the command that runs the pipeline, not a step of it


def _leaves(section: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in section.items():
        if isinstance(value, dict) and key != "iterations":
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_params_yaml_is_complete_and_config_defaults_equal_it() -> None:
    """One home for every value: params.yaml names every key, and a default in config.py is its value."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    parsed = config.parse_params(raw).model_dump(mode="json")
    assert _leaves(raw).keys() == _leaves(parsed).keys()
    for name, its in parsed["iterations"].items():
        assert raw["iterations"][name].keys() == its.keys(), f"iterations.{name} leaves a key to its default"
    defaults = {}
    for name, field in config.Params.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, config.Section):
            section = field.annotation
            for key, sub in section.model_fields.items():
                if not sub.is_required():
                    defaults[f"{name}.{key}"] = sub.get_default(call_default_factory=True)
        elif not field.is_required():
            defaults[name] = field.get_default(call_default_factory=True)
    values = _leaves(parsed)
    differ = {k: (d, values[k]) for k, d in defaults.items() if (list(d) if isinstance(d, tuple) else d) != values[k]}
    assert not differ, f"config.py defaults (left) that params.yaml does not run with (right): {differ}"


PIPELINES = [REPO, *sorted(p.parent for p in (REPO / "domains").glob("*/params.yaml"))]


@pytest.mark.parametrize("folder", PIPELINES, ids=lambda p: p.name)
def test_every_listed_param_is_written_in_the_params_file(folder: Path) -> None:
    """DVC hashes a listed param from the file itself: one the file leaves to a default stops the run."""
    raw = yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8"))
    parsed = config.parse_params(raw).model_dump(mode="json")
    assert _leaves(raw).keys() == _leaves(parsed).keys(), f"{folder}/params.yaml leaves keys to defaults"
    pipeline = yaml.safe_load((folder / "dvc.yaml").read_text(encoding="utf-8"))
    for name, body in pipeline["stages"].items():
        spec = body.get("do", body)
        foreach = body.get("foreach")
        runs = list(raw["iterations"]) if foreach == "${iterations}" else list(foreach or [None])
        for key in spec.get("params", []):
            for run in runs:
                node = raw
                for part in str(key).replace("${key}", run or "").split("."):
                    assert isinstance(node, dict) and part in node, (
                        f"{folder.name}/dvc.yaml {name}: {key} not in params"
                    )
                    node = node[part]
