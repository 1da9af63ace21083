"""Generation engines on the pipeline's own prompts: transformers vs OpenVINO f32 vs OpenVINO int8.

Each prompt kind runs through isara.generate.generate with its stage's settings (params.yaml):
label prompts at the default 2 contexts and at the paper's 8, proposal prompts (sampled), and
evaluation prompts. Transformers and both OpenVINO engines run in the same session on the
packaged SmolLM2-135M; a row reports new tokens/s of each and the share of texts identical to
transformers' (greedy agreement; for proposals, the same seeded sample). Ratios are reported,
not asserted: int8 weights write another model's texts (docs/cpu-engines.md).

Run alone: pytest tests/bench/test_bench_engine.py --benchmark-only
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from isara.config import load_params
from isara.generate import Job
from tests.test_openvino_engine import eval_prompts, label_prompts, prepared_data, proposal_prompts

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "params.yaml")
# (settings, prompts): one planned batch of each stage at its default batch size.
KINDS = {
    "label-2ctx": (PARAMS.label, PARAMS.label.batch_size),
    "label-8ctx": (PARAMS.label, PARAMS.label.batch_size),
    "propose": (PARAMS.propose, PARAMS.propose.batch_size),
    "evaluate": (PARAMS.evaluate, PARAMS.evaluate.batch_size),
}
END = "<|im_end|>"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="pip install 'isara[openvino]'")


@pytest.fixture(scope="module")
def setup(base: Path, tmp_path_factory: pytest.TempPathFactory):
    """The base model, the pipeline's prompts of each kind, and both OpenVINO engines converted and warm."""
    import torch

    from isara.generate import Local
    from isara.models import load_model
    from isara.openvino_engine import CACHE, MODEL_XML, OpenVino, converted

    torch.set_num_threads(os.cpu_count() or 1)
    local = Local(*load_model(base))
    tok = local.tokenizer
    prepared = prepared_data(tmp_path_factory.mktemp("prepared"))
    prompts = {
        "label-2ctx": label_prompts(prepared, KINDS["label-2ctx"][1], contexts=2),
        "label-8ctx": label_prompts(prepared, KINDS["label-8ctx"][1], contexts=8),
        "propose": proposal_prompts(tok, prepared, KINDS["propose"][1], contexts=PARAMS.contexts),
        "evaluate": eval_prompts(prepared, KINDS["evaluate"][1]),
    }
    root, engines, conversion = ROOT / CACHE, {}, {}  # the pipeline's own cache: a rerun converts nothing
    warm = [Job(0, [tok("Hello", add_special_tokens=False)["input_ids"]], 0)]
    for weights in ("f32", "int8"):
        start = time.perf_counter()
        ir = converted(base, root, weights)
        conversion[weights] = (time.perf_counter() - start, (ir / MODEL_XML).with_suffix(".bin").stat().st_size)
        engines[weights] = OpenVino(base, weights, cache_root=root)
        list(engines[weights].run(warm, PARAMS.label.model_copy(update={"max_new_tokens": 1}), "chatml"))
    list(local.run(warm, PARAMS.label.model_copy(update={"max_new_tokens": 1}), "chatml"))
    return local, engines, prompts, conversion, {}


def _run(model_or_engine, tok, prompts: list[str], cfg) -> tuple[list[str], float, int]:
    """(raw texts, seconds, new tokens): a turn's tokens up to and including its end token."""
    from isara.generate import generate

    start = time.perf_counter()
    raw, _ = generate(model_or_engine, tok, prompts, cfg, PARAMS.seed, "chatml", "bench")
    seconds = time.perf_counter() - start
    count = sum(len(tok(r.split(END)[0], add_special_tokens=False)["input_ids"]) + (END in r) for r in raw)
    return raw, seconds, count


@pytest.mark.parametrize("weights", ["f32", "int8"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_openvino_against_transformers(benchmark, setup, kind: str, weights: str) -> None:
    local, engines, prompts, conversion, reference = setup
    cfg, tok = KINDS[kind][0], local.tokenizer
    if kind not in reference:  # transformers once per kind, right before the first engine's run
        reference[kind] = _run(local.model, tok, prompts[kind], cfg)
    ref, ref_s, ref_tok = reference[kind]
    out, ov_s, ov_tok = benchmark.pedantic(_run, args=(engines[weights], tok, prompts[kind], cfg), rounds=1)
    agree = sum(a == b for a, b in zip(ref, out, strict=True)) / len(ref)
    mode = "seeded sampling" if cfg.do_sample else "greedy"
    prompt_tokens = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts[kind]) / len(ref)
    convert_s, ir_bytes = conversion[weights]
    benchmark.extra_info.update(
        input=f"{len(ref)} {kind} prompts (~{prompt_tokens:.0f} tokens), <= {cfg.max_new_tokens} new tokens, {mode}",
        baseline=f"transformers fp32: {ref_tok / ref_s:.1f} new tok/s ({ref_s:.1f} s)",
        fast=f"OpenVINO {weights}: {ov_tok / ov_s:.1f} new tok/s ({ov_s:.1f} s), {agree:.0%} texts identical ({mode})",
        speed_ratio=(ov_tok / ov_s) / (ref_tok / ref_s),
        agreement=agree,
        convert_s=convert_s,  # seconds to find the IR: a conversion on a miss, hashing the checkpoint on a hit
        ir_mb=ir_bytes / 1e6,
        floor="reported",
    )
