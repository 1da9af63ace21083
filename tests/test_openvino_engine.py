"""The OpenVINO engine: conversion (deterministic, cached, atomic, offline) and the texts it writes.

Real pipeline prompts on the packaged SmolLM2-135M: label prompts with the label settings, proposal
prompts with the propose settings, each compared with what isara.generate.Local writes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isara import schema
from isara.config import DataParams, LabelParams, ProposeParams, parse_params
from isara.errors import IsaraError
from isara.generate import Job
from isara.icl import answer_prompt
from tests.conftest import REPO, base_params, sizes

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="pip install 'isara[openvino]'")
N_PROMPTS = 8


# --- the pipeline's prompts (also read by tests/bench/test_bench_engine.py) ----------------------


def prepared_data(tmp: Path) -> Path:
    """The prepared seed and eval prompts: the pipeline's own, else prepare_data run on data/raw into tmp."""
    own = REPO / "data/prepared"
    if (own / "seed_safety.parquet").is_file() and (own / "eval_safety.parquet").is_file():
        return own
    from isara.prepare_data import prepare

    prepare(REPO / "data/raw", tmp, sizes(DataParams()), seed=0)
    return tmp


def label_prompts(prepared: Path, n: int, contexts: int) -> list[str]:
    """Label prompts as isara.label builds them: a question after `contexts` pool pairs.

    Seed questions stand in for proposals and a seeded draw of other seed pairs for the retrieved
    neighbours (no embedder is loaded): the prompts have the label step's shape and lengths.
    """
    seed = schema.read(prepared / "seed_safety.parquet", schema.SEED)
    pairs = list(zip(seed["question"], seed["answer"], strict=True))
    rng = random.Random(0)
    prompts = []
    for i in range(n):
        question = pairs[-1 - i % len(pairs)][0]
        others = [p for p in pairs if p[0] != question]
        prompts.append(answer_prompt(rng.sample(others, min(contexts, len(others))), question, "chatml"))
    return prompts


def proposal_prompts(tok, prepared: Path, n: int, contexts: int) -> list[str]:
    """The propose step's own prompts (isara.propose.prompts_for) over the seed pool."""
    from isara.propose import prompts_for

    pool = schema.read(prepared / "seed_safety.parquet", schema.SEED)
    return prompts_for(tok, pool, ProposeParams(), "chatml", contexts, seed=0, k=1, n=n)[0]


def eval_prompts(prepared: Path, n: int) -> list[str]:
    """The evaluate step's prompts: a seeded share of every safety suite, answered with no examples."""
    from isara.evaluate import eval_prompts as sample

    prompts = sample(prepared / "eval_safety.parquet", max(1, n // 4), seed=0)["prompt"].to_list()[:n]
    return [answer_prompt([], q, "chatml") for q in prompts]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """(cache root, the base model's f32 IR in it, seconds the conversion took)."""
    from isara.openvino_engine import converted

    root = tmp_path_factory.mktemp("openvino")
    start = time.perf_counter()
    ir = converted(base, root, "f32")
    return root, ir, time.perf_counter() - start


@pytest.fixture(scope="module")
def local(base: Path):
    from isara.generate import Local
    from isara.models import load_model

    return Local(*load_model(base))


@pytest.fixture(scope="module")
def engine(base: Path, cache):
    from isara.openvino_engine import OpenVino

    return OpenVino(base, "f32", threads=os.cpu_count() or 1, cache_root=cache[0])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared_data(tmp_path_factory.mktemp("prepared"))


def _texts(model_or_engine, tok, prompts: list[str], cfg, seed: int = 0) -> list[str]:
    from isara.generate import generate

    return generate(model_or_engine, tok, prompts, cfg, seed, "chatml", "test")[0]


def _digests(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


# --- conversion ------------------------------------------------------------------------------


@pytest.mark.model
def test_conversion_is_byte_deterministic(base: Path, cache, tmp_path: Path) -> None:
    from isara.openvino_engine import MODEL_XML, convert

    again = convert(base, tmp_path / "again", "f32")
    assert (again / MODEL_XML).is_file()
    assert _digests(again) == _digests(cache[1])
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary folder left beside it


@pytest.mark.model
def test_a_cache_hit_converts_nothing(base: Path, cache, caplog) -> None:
    from isara.openvino_engine import MODEL_XML, converted

    root, ir, first_s = cache
    stamp = (ir / MODEL_XML).stat().st_mtime_ns
    start = time.perf_counter()
    with caplog.at_level("INFO", logger="isara.openvino_engine"):
        assert converted(base, root, "f32") == ir
    assert "converted" not in caplog.text
    assert (ir / MODEL_XML).stat().st_mtime_ns == stamp
    assert time.perf_counter() - start < first_s / 2  # hashing the checkpoint, no trace


@pytest.mark.model
def test_an_interrupted_conversion_leaves_nothing_and_no_telemetry(base: Path, tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "ir" / "f32"
    home.mkdir()
    code = f"from isara.openvino_engine import convert; convert({str(base)!r}, {str(out)!r}, 'f32')"
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.parent.is_dir() and any(out.parent.iterdir())) and proc.poll() is None:
        assert time.monotonic() < deadline, "the conversion never started writing"
        time.sleep(0.2)
    time.sleep(1.0)  # inside the trace
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    assert list(out.parent.iterdir()) == []  # neither the IR nor its temporary folder
    assert list(home.rglob("*")) == []  # openvino's telemetry wrote nothing (no ~/intel, no client id)


# --- texts -----------------------------------------------------------------------------------


@pytest.mark.model
def test_greedy_label_texts_are_those_of_transformers(local, engine, prepared: Path) -> None:
    prompts = label_prompts(prepared, N_PROMPTS, contexts=2)
    cfg = LabelParams(bf16=False)  # f32 against fp32; repetition penalty 1.2, no-repeat 10-grams, 64 new tokens
    assert _texts(engine, local.tokenizer, prompts, cfg) == _texts(local.model, local.tokenizer, prompts, cfg)


@pytest.mark.model
def test_seeded_proposals_are_those_of_transformers_and_repeat(local, engine, prepared: Path) -> None:
    tok = local.tokenizer
    prompts = proposal_prompts(tok, prepared, N_PROMPTS, contexts=2)
    cfg = ProposeParams(batch_size=4, bf16=False)  # sampling, temperature 0.9, top-p 0.95; two batches, two seeds
    ours = _texts(engine, tok, prompts, cfg, seed=3)
    assert ours == _texts(local.model, tok, prompts, cfg, seed=3)
    assert _texts(engine, tok, prompts, cfg, seed=3) == ours  # the same engine, run again
    assert _texts(engine, tok, prompts, cfg, seed=4) != ours  # and the seed is what chooses


@pytest.mark.model
def test_the_engine_param_routes_evaluation_through_openvino(
    base: Path, local, cache, prepared: Path, monkeypatch
) -> None:
    """`scale.engine: openvino` in params: backends.load hands the stages this engine, same answers."""
    from isara import backends
    from isara.config import EvaluateParams, ScaleParams
    from isara.openvino_engine import CACHE, OpenVino

    root = cache[0]
    monkeypatch.chdir(root.parent)
    (root.parent / CACHE).parent.mkdir(parents=True, exist_ok=True)
    if not (root.parent / CACHE).exists():
        (root.parent / CACHE).symlink_to(root)  # the conversion the fixture made is a cache hit
    model, tok = backends.load(base, ScaleParams(engine="openvino"), threads=os.cpu_count() or 1)
    assert isinstance(model, OpenVino) and model.weights == "f32"
    prompts = eval_prompts(prepared, N_PROMPTS)
    cfg = EvaluateParams(bf16=False)  # the f32 engine against transformers in fp32
    assert _texts(model, tok, prompts, cfg) == _texts(local.model, local.tokenizer, prompts, cfg)
    with pytest.raises(IsaraError, match="ray"):
        parse_params({**base_params(), "scale": {"engine": "openvino", "placement": "ray"}})


# --- errors ----------------------------------------------------------------------------------


def test_a_missing_openvino_package_is_one_line(monkeypatch, tmp_path: Path) -> None:
    from isara.openvino_engine import OpenVino, convert

    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` meets when it is not installed
    for call in (lambda: OpenVino(tmp_path), lambda: convert(tmp_path, tmp_path / "ir")):
        with pytest.raises(IsaraError, match=r"OpenVINO is not installed \(pip install 'isara\[openvino\]'\)") as e:
            call()
        assert "\n" not in str(e.value)


@pytest.mark.model
def test_a_missing_or_damaged_checkpoint_is_one_line(base: Path, tmp_path: Path) -> None:
    from isara.openvino_engine import OpenVino, convert, converted

    missing = tmp_path / "missing"
    for call in (lambda: OpenVino(missing), lambda: converted(missing, tmp_path / "cache")):
        with pytest.raises(IsaraError, match="not a model folder") as e:
            call()
        assert "\n" not in str(e.value)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in base.iterdir():
        (damaged / f.name).write_bytes(b"not safetensors" if f.suffix == ".safetensors" else f.read_bytes())
    with pytest.raises(IsaraError, match="cannot load model") as e:
        convert(damaged, tmp_path / "ir")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "ir").exists()


@pytest.mark.model
def test_beam_search_is_refused_on_one_line(engine) -> None:
    with pytest.raises(IsaraError, match="not supported by the openvino engine"):
        list(engine.run([Job(0, [[1, 2, 3]], 0)], LabelParams(num_beams=2), "chatml"))
