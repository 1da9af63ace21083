"""Params: `isara validate` and `isara profile` through the console script, and load_params directly."""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from isara.config import Params, load_params
from isara.errors import IsaraError
from tests.conftest import REPO, base_params, error_line, isara


def _raw_dir_beside(path: Path) -> None:
    """validate reads data.raw_dir relative to the params file; give a tmp params file the real data."""
    (path.parent / "data").mkdir(exist_ok=True)
    (path.parent / "data" / "raw").symlink_to(REPO / "data" / "raw")


@pytest.mark.model
def test_committed_params_validate() -> None:
    result = isara("validate", "--params", "params.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "params.yaml: ok"
    raw = base_params()
    params = load_params(REPO / "params.yaml")
    assert params.contexts == raw["contexts"] and set(params.iterations) == set(raw["iterations"])


@pytest.mark.model
def test_tiny_profile_output_validates(tmp_path: Path) -> None:
    out = tmp_path / "params.yaml"
    result = isara("profile", "profiles/tiny.yaml", "--out", out)
    assert result.returncode == 0, result.stderr
    _raw_dir_beside(out)
    result = isara("validate", "--params", out)
    assert result.returncode == 0, result.stderr
    tiny = yaml.safe_load((REPO / "profiles/tiny.yaml").read_text(encoding="utf-8"))
    assert load_params(out).contexts == tiny["contexts"]


def _assert_merged(merged: dict, base: dict, over: dict, where: str = "") -> None:
    """Each key: the overlay's value where it sets one, else the base's; sections merge key by key."""
    for key, value in merged.items():
        name = f"{where}{key}"
        if isinstance(value, dict) and isinstance(over.get(key), dict):
            if name == "iterations":  # a profile's iterations replace the base's whole
                assert set(value) == set(over[key])
                _assert_merged(value, {}, over[key], "iterations.")
            else:
                _assert_merged(value, base.get(key, {}), over[key], f"{name}.")
        elif key in over:
            assert value == over[key], name
        elif key in base:
            assert value == base[key], name


@pytest.mark.model
def test_profile_deep_merges_and_writes_every_key() -> None:
    result = isara("profile", "profiles/tiny.yaml")  # to stdout
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    tiny = yaml.safe_load((REPO / "profiles/tiny.yaml").read_text(encoding="utf-8"))
    _assert_merged(merged, base_params(), tiny)
    # Every key is explicit, including those neither file names (e.g. label.top_p).
    assert set(merged) == set(Params.model_fields)
    for name, field in Params.model_fields.items():
        if name != "iterations" and isinstance(merged[name], dict):
            assert set(merged[name]) == set(field.annotation.model_fields), name
    assert merged["label"]["top_p"] == 1.0


@pytest.mark.model
def test_profile_keeps_base_values_not_defaults(tmp_path: Path) -> None:
    base = base_params()
    base["train"]["max_length"] = 333  # the model default is 384
    base_file, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base_file.write_text(yaml.safe_dump(base), encoding="utf-8")
    overlay.write_text("train: {epochs: 5}\niterations: {it1: {k: 1, prev: 0, extends: it0}}\n", encoding="utf-8")
    result = isara("profile", overlay, "--base", base_file)
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    assert merged["train"]["epochs"] == 5 and merged["train"]["max_length"] == 333
    assert merged["train"]["lr"] == base["train"]["lr"]
    assert list(merged["iterations"]) == ["it1"]  # a profile's iterations replace the base's
    assert merged["iterations"]["it1"]["k"] == 1 and merged["iterations"]["it1"]["prev"] == 0


@pytest.mark.model
def test_profile_with_a_bad_overlay_names_it(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("train: {lrr: 0.1}\n", encoding="utf-8")
    line = error_line(isara("profile", overlay))
    assert str(overlay) in line and "train.lrr" in line


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        *parents, key = path.split(".")
        for p in parents:
            raw = raw[p]
        raw[key] = value

    return mutate


def _drop(key: str) -> Callable[[dict], None]:
    return lambda raw: raw.pop(key)


def _drop_item(section: str, key: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        for part in section.split("."):
            raw = raw[part]
        raw.pop(key)

    return mutate


BAD_PARAMS = {
    "unknown top-level key": (_set("gama", 1.0), ["unknown key 'gama'"]),
    "unknown nested key": (_set("train.lrr", 1e-5), ["unknown key 'train.lrr'"]),
    "unknown deep key": (_set("iterations.it1.previous", 0), ["unknown key 'iterations.it1.previous'"]),
    "wrong type": (_set("gamma", "abc"), ["gamma", "'abc'"]),
    "wrong nested type": (_set("data.n_seed", "many"), ["data.n_seed", "'many'"]),
    "section not a mapping": (_set("data", 5), ["data"]),
    "out of range gamma": (_set("gamma", -1), ["gamma", "-1"]),
    "out of range contexts": (_set("contexts", 0), ["contexts", "0"]),
    "contexts too large": (_set("contexts", 65), ["contexts", "65"]),
    "out of range nested": (_set("data.n_xstest_eval", 251), ["data.n_xstest_eval", "251"]),
    "bad literal": (_set("model.chat_format", "llama"), ["model.chat_format", "'llama'"]),
    "prev does not exist": (
        _set("iterations.it3", {"k": 3, "prev": 5, "extends": "it0"}),
        ["iterations.it3", "prev=5"],
    ),
    "name does not match k": (_set("iterations.it3", {"k": 2, "prev": 1, "extends": "it0"}), ["iterations.it3", "it2"]),
    "prev not before k": (_set("iterations.it2", {"k": 2, "prev": 2, "extends": "it0"}), ["iterations.it2", "prev=2"]),
    "extends missing": (_drop_item("iterations.it1", "extends"), ["iterations.it1.extends", "required"]),
    "extends an unknown run": (_set("iterations.oneshot.extends", "it7"), ["iterations.oneshot", "extends=it7"]),
    "extends a run of another k": (_set("iterations.oneshot.extends", "it2"), ["iterations.oneshot", "another k"]),
    "extends a run as large": (_set("iterations.oneshot.scale", 1), ["iterations.oneshot", "as many or more"]),
    "missing section": (_drop("propose"), ["propose", "required"]),
}


@pytest.fixture(scope="module")
def bad_params_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`isara validate` on every BAD_PARAMS file, run side by side (each process mostly waits on imports)."""

    def run(case: str):
        raw = copy.deepcopy(base_params())
        BAD_PARAMS[case][0](raw)
        path = tmp_path_factory.mktemp("bad_params") / "params.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return case, (path, isara("validate", "--params", path))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, BAD_PARAMS))


@pytest.mark.model
@pytest.mark.parametrize("case", BAD_PARAMS, ids=list(BAD_PARAMS))
def test_bad_params_fail_in_one_line(case: str, bad_params_runs: dict) -> None:
    expected = BAD_PARAMS[case][1]
    path, result = bad_params_runs[case]
    line = error_line(result)
    assert str(path) in line
    for text in expected:
        assert text in line
    assert "Value error" not in line
    with pytest.raises(IsaraError) as err:
        load_params(path)
    assert line == f"isara: error: {err.value}"  # the CLI reports exactly what load_params raises


BAD_FILES = {
    "a list": ("- seed\n- gamma\n", "expected a mapping"),
    "a scalar": ("just words\n", "expected a mapping"),
    "empty": ("", "expected a mapping"),
    "unclosed bracket": ("seed: [0, 1\ngamma: 1\n", "not valid YAML"),
    "tab indent": ("seed: 0\ndata:\n\tn_seed: 4\n", "not valid YAML"),
    "duplicate key": (None, "duplicate key 'train'"),  # the second section would silently win
    "not UTF-8": ("seed: 0\ngamma: caf\xe9\n".encode("latin-1"), "not valid YAML"),
}


@pytest.mark.model
@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_params_files_fail_in_one_line(case: str, tmp_path: Path) -> None:
    content, expected = BAD_FILES[case]
    path = tmp_path / "params.yaml"
    if content is None:
        content = (REPO / "params.yaml").read_text(encoding="utf-8") + "\ntrain: {epochs: 9}\n"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    line = error_line(isara("validate", "--params", path))
    assert str(path) in line and expected in line
    with pytest.raises(IsaraError, match=expected):
        load_params(path)


@pytest.mark.model
def test_missing_params_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    line = error_line(isara("validate", "--params", path))
    assert str(path) in line and "not found" in line
    with pytest.raises(IsaraError, match="not found"):
        load_params(path)


@pytest.mark.model
def test_validate_checks_the_files_params_name(tmp_path: Path) -> None:
    raw = base_params()
    raw["data"]["raw_dir"] = "no/such/dir"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    load_params(path)  # the params themselves are fine ...
    line = error_line(isara("validate", "--params", path))  # ... the data they name is not
    assert "data.raw_dir" in line and "no/such/dir" in line


@pytest.mark.model
@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where: str, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    args = ["validate", "--params", path]
    result = isara(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert f"IsaraError: {path}: params file not found" in result.stderr


@pytest.mark.parametrize("profile", sorted((REPO / "profiles").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_lays_over_the_default_params(profile: Path) -> None:
    from isara.config import apply_profile, parse_params

    parse_params(yaml.safe_load(apply_profile(REPO / "params.yaml", profile)), profile.name)


def test_the_paper_profile_runs_the_authors_recipe() -> None:
    """self_alignment's generate.py and config.py, scripts/sft.sh and safe-rlhf's ADAM_BETAS."""
    from isara.config import apply_profile, parse_params

    p = parse_params(yaml.safe_load(apply_profile(REPO / "params.yaml", REPO / "profiles/paper.yaml")))
    assert (p.contexts, p.allocation, p.propose.n) == (8, "stratified", 512)
    propose = (p.propose.do_sample, p.propose.num_beams, p.propose.repetition_penalty, p.propose.no_repeat_ngram_size)
    assert propose == (True, 5, 1.05, 10) and (p.propose.temperature, p.propose.top_p) == (1.0, 1.0)
    assert (p.propose.length_penalty, p.propose.exponential_decay_length_penalty) == (2.0, (15, 1.6))
    label = (p.label.do_sample, p.label.num_beams, p.label.repetition_penalty, p.label.no_repeat_ngram_size)
    assert label == (True, 5, 1.2, 10) and p.label.exponential_decay_length_penalty == (30, 1.05)
    assert p.label.max_new_tokens == 100 and p.label.length_penalty == 1.0
    t = p.train
    assert (t.epochs, t.batch_size, t.grad_accum, t.schedule, t.warmup_steps) == (1, 4, 8, "cosine", 0)
    assert (t.adam_betas, t.lr, t.lr_decay, t.weight_decay) == ((0.9, 0.95), 2e-5, 0.5, 0.0)
