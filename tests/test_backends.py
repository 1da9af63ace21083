"""Generation backends: the vLLM mapping and its errors, and Ray writing what transformers writes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from isara import backends, schema
from isara.config import GenerateParams, ScaleParams, load_params, parse_params
from isara.errors import IsaraError
from isara.generate import batch_seed
from isara.models import load_tokenizer
from tests.conftest import REPO, base_params, error_line, sizes

HAS_VLLM = importlib.util.find_spec("vllm") is not None
# Every SamplingParams field sampling_kwargs may set (vllm 0.30.0, vllm/sampling_params.py).
VLLM_FIELDS = {"n", "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop_token_ids", "seed"}
VLLM_FIELDS |= {"skip_special_tokens"}


def test_scale_params_default_to_transformers_and_refuse_unknown_values() -> None:
    assert load_params(REPO / "params.yaml").scale == ScaleParams()
    raw = base_params()
    raw["scale"] = {"engine": "spark"}
    with pytest.raises(IsaraError, match=r"scale\.engine"):
        parse_params(raw)
    raw["scale"] = {"engine": "vllm", "placement": "ray"}  # the placement would change vLLM's texts
    with pytest.raises(IsaraError, match=r"scale: placement=ray with engine=vllm"):
        parse_params(raw)
    raw["scale"] = {"ray_actor": 2}
    with pytest.raises(IsaraError, match=r"unknown key 'scale\.ray_actor'"):
        parse_params(raw)


def test_greedy_and_sampled_configs_map_onto_vllm_sampling_params() -> None:
    greedy = GenerateParams(max_new_tokens=64, repetition_penalty=1.2)
    kw = backends.sampling_kwargs(greedy, [2, 7], 50, 123)
    assert kw == {
        "n": 1,
        "max_tokens": 64,
        "repetition_penalty": 1.2,
        "stop_token_ids": [2, 7],
        "seed": 123,
        "skip_special_tokens": False,
        "temperature": 0.0,  # vLLM's greedy decoding
    }
    sampled = GenerateParams(max_new_tokens=40, do_sample=True, temperature=0.9, top_p=0.95)
    kw = backends.sampling_kwargs(sampled, [2], 50, 5)
    assert (kw["temperature"], kw["top_p"], kw["top_k"], kw["seed"]) == (0.9, 0.95, 50, 5)
    assert set(kw) <= VLLM_FIELDS
    if HAS_VLLM:
        from vllm import SamplingParams

        assert SamplingParams(**kw).top_k == 50


def test_what_vllm_cannot_do_fails_on_one_line_naming_the_key() -> None:
    with pytest.raises(IsaraError, match=r"num_beams=5 needs beam search"):
        backends.sampling_kwargs(GenerateParams(max_new_tokens=8, num_beams=5), [2], 50, 0)
    with pytest.raises(IsaraError, match=r"no_repeat_ngram_size=10 has no vLLM equivalent"):
        backends.check_vllm(GenerateParams(max_new_tokens=8, no_repeat_ngram_size=10))


class _Tokenizer:
    """What generate_kwargs reads of a tokenizer: the end-of-text and end-of-turn ids."""

    eos_token_id = pad_token_id = 2

    def convert_tokens_to_ids(self, token: str) -> int:
        return 7


def test_decoding_options_reach_generate_only_when_set() -> None:
    from isara.config import EvaluateParams, LabelParams, ProposeParams
    from isara.generate import generate_kwargs

    common = {"eos_token_id": [2, 7], "pad_token_id": 2}
    greedy = {"do_sample": False, "num_beams": 1, "temperature": None, "top_p": None, "top_k": None}
    # at their defaults, the calls made before length_penalty and the decay existed
    assert generate_kwargs(_Tokenizer(), ProposeParams(), "chatml") == {
        "max_new_tokens": 40, "do_sample": True, "num_beams": 1, "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0, **common, "temperature": 0.9, "top_p": 0.95,
    }  # fmt: skip
    assert generate_kwargs(_Tokenizer(), LabelParams(), "chatml") == {
        "max_new_tokens": 64,
        "repetition_penalty": 1.2,
        "no_repeat_ngram_size": 10,
        **common,
        **greedy,
    }
    assert generate_kwargs(_Tokenizer(), EvaluateParams(), "chatml") == {
        "max_new_tokens": 40,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        **common,
        **greedy,
    }
    authors = GenerateParams(do_sample=True, num_beams=5, length_penalty=2, exponential_decay_length_penalty=(15, 1.6))
    kw = generate_kwargs(_Tokenizer(), authors, "chatml")
    assert (kw["num_beams"], kw["length_penalty"], kw["exponential_decay_length_penalty"]) == (5, 2.0, (15, 1.6))


def test_decoding_options_are_checked_when_params_load() -> None:
    raw = base_params()
    raw["label"].update(exponential_decay_length_penalty=[30, 1.05], num_beams=5, length_penalty=2.0)
    assert parse_params(raw).label.exponential_decay_length_penalty == (30, 1.05)
    raw["propose"]["length_penalty"] = 2.0  # with propose.num_beams 1 it would do nothing
    with pytest.raises(IsaraError, match=r"propose: length_penalty=2.0 acts only in beam search"):
        parse_params(raw)
    raw = base_params()
    raw["label"]["exponential_decay_length_penalty"] = [30]
    with pytest.raises(IsaraError, match=r"label\.exponential_decay_length_penalty"):
        parse_params(raw)


def test_vllm_refuses_the_decoding_options_it_cannot_honour() -> None:
    decay = GenerateParams(max_new_tokens=8, exponential_decay_length_penalty=(15, 1.6))
    with pytest.raises(IsaraError, match=r"exponential_decay_length_penalty=\[15, 1.6\] has no vLLM equivalent"):
        backends.check_vllm(decay)
    longer = GenerateParams(max_new_tokens=8).model_copy(update={"length_penalty": 2.0})  # unvalidated: reach it
    with pytest.raises(IsaraError, match=r"length_penalty=2.0 acts in beam search"):
        backends.check_vllm(longer)
    with pytest.raises(IsaraError, match=r"num_beams=5 needs beam search"):  # the authors' beam sample
        backends.check_vllm(GenerateParams(do_sample=True, num_beams=5, length_penalty=2.0))


def test_vllm_top_k_and_seeds_follow_the_transformers_path(tmp_path: Path) -> None:
    assert backends.top_k(tmp_path) == 50  # no generation config: transformers' default
    (tmp_path / "generation_config.json").write_text(json.dumps({"top_k": 20}))
    assert backends.top_k(tmp_path) == 20
    seeds = {backends.row_seed(batch_seed(7, b), r) for b in range(50) for r in range(64)}
    assert len(seeds) == 50 * 64  # every row of every planned batch samples apart


@pytest.mark.model
@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_a_stage_asking_for_vllm_without_it_stops_on_one_line(tmp_path: Path) -> None:
    import random

    from isara.merge import seed_pool
    from isara.prepare_data import safety_seed

    raw = base_params()
    raw["scale"] = {"engine": "vllm"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    params = load_params(tmp_path / "params.yaml")
    seed = safety_seed(REPO / "data/raw", sizes(params.data), set(), random.Random(0)).head(4)
    schema.write(seed_pool(seed), tmp_path / "data/it0/pool.parquet", schema.POOL)
    done = subprocess.run(
        [sys.executable, str(REPO / "stages/propose.py"), "--run", "it1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = error_line(done)
    assert line == "isara: error: scale.engine=vllm: vLLM is not installed (pip install 'isara[vllm]')"


# --- the real model on a local Ray instance ----------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    """One local 2-CPU instance for the module's Ray runs (each run would otherwise start its own)."""
    import ray

    assert backends.connect(ScaleParams())
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_actors_write_the_texts_this_process_writes(base: Path, local_ray) -> None:
    """Sampled, so each batch's seed matters; greedy decoding: the label stage test in test_pipeline.py."""
    import torch

    from isara.generate import generate
    from isara.icl import answer_prompt
    from isara.models import load_model

    torch.set_num_threads(2)  # the stages' default here: model.threads 0 = both cores
    model, tok = load_model(base)
    questions = ["Why is the sky blue?", "Name a fruit.", "How do I stay calm before an exam? Give two tips."]
    questions += ["What is 2 + 2?", "Write one sentence about the sea and one about mountains.", "Hi"]
    prompts = [
        answer_prompt([("Is water wet?", "Yes, water makes things wet.")] * (i % 3), q, "chatml")
        for i, q in enumerate(questions)
    ]
    cfg = GenerateParams(max_new_tokens=12, batch_size=2, do_sample=True, temperature=0.9, top_p=0.95)
    here = generate(model, tok, prompts, cfg, 3, "chatml", "here")
    engine = backends.Ray(base, ScaleParams(placement="ray", ray_actors=2), False)
    there = generate(engine, load_tokenizer(base), prompts, cfg, 3, "chatml", "ray")
    assert there == here and all(here[1])
