"""Training: tokens/s and peak RSS of full fine-tuning and LoRA, with and without bf16 autocast and
gradient checkpointing, against the plain fp32 step with logits at every position.

Each variant runs in its own process (peak RSS is per process) on real default training data
(data/it1/train.parquet of the committed run) from models/it0. Run: make bench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isara.models import native_bf16

NO_BF16 = "this CPU has no AVX512-BF16 or AMX: bf16 would be emulated, and training uses fp32 here"

ROOT = Path(__file__).resolve().parents[2]
STEPS, WARMUP, BATCH = 7, 2, 8
VARIANTS = {
    "baseline": "full, fp32, logits at every position, per-tensor AdamW",
    "full_fp32": "full, fp32, answer-only logits",
    "full_bf16": "full, bf16 autocast, answer-only logits (default)",
    "full_bf16_ckpt": "full, bf16, gradient checkpointing",
    "lora_bf16": "LoRA r=16, bf16",
}


def _worker(variant: str) -> dict:
    """Run STEPS optimizer steps of one variant; tokens/s after WARMUP steps and the loss per step."""
    import time

    import numpy as np
    import polars as pl
    import torch
    import torch.nn.functional as F

    from isara import train as T
    from isara.config import TrainParams
    from isara.loss import collate, step_loss
    from isara.models import load_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model, tok = load_model(ROOT / "models/it0")
    cfg = TrainParams(method="lora" if variant.startswith("lora") else "full", bf16="bf16" in variant)
    if cfg.method == "lora":
        model = T.lora_wrap(model, cfg)
    if variant.endswith("ckpt"):
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model.train()
    data = pl.read_parquet(ROOT / "data/it1/train.parquet")
    examples = T.tokenize_rows(tok, data, "chatml", 256)
    plan = T.batches([len(e[0]) for e in examples], BATCH, np.random.default_rng(0))[:STEPS]
    # The baseline is the plain path: per-tensor AdamW; the others use the pipeline's fused AdamW.
    fused = variant != "baseline"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, fused=fused)
    losses, tokens, seconds = [], 0, 0.0
    for step, idx in enumerate(plan):
        ids, mask, labels, w = collate([examples[i] for i in idx], tok.pad_token_id)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            if variant == "baseline":
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                y = labels[:, 1:]
                tok_loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=-100, reduction="none")
                m = (y != -100).float()
                loss = (((tok_loss * m).sum(1) / m.sum(1).clamp(min=1)) * w).mean()
            else:
                loss = step_loss(model, ids, mask, labels, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= WARMUP:
            seconds += time.perf_counter() - start
            tokens += int(mask.sum())
        losses.append(round(loss.item(), 4))
    return {"tokens_per_s": tokens / seconds, "losses": losses}


def _measure(variant: str) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, variant],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    assert status == 0, f"{variant} failed"
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_gb": usage.ru_maxrss / 2**20}


@pytest.fixture(scope="module")
def runs() -> dict:
    if not (ROOT / "models/it0/config.json").is_file() or not (ROOT / "data/it1/train.parquet").is_file():
        pytest.skip("run `dvc repro` (or `dvc pull`) first: needs models/it0 and data/it1")
    return {v: _measure(v) for v in VARIANTS if "bf16" not in v or native_bf16("cpu")}


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "baseline"])
def test_training_step(benchmark, runs, variant) -> None:
    if variant not in runs:
        pytest.skip(NO_BF16)
    base, fast = runs["baseline"], runs[variant]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the timing is the subprocess's, below
    drift = max(abs(a - b) for a, b in zip(base["losses"], fast["losses"], strict=True))
    benchmark.extra_info.update(
        input=f"{STEPS} steps x batch {BATCH} of the default it1 training set, SmolLM2-135M, 2 threads",
        baseline=f"{VARIANTS['baseline']}: {base['tokens_per_s']:.0f} tok/s, peak RSS {base['peak_rss_gb']:.1f} GB",
        fast=f"{VARIANTS[variant]}: {fast['tokens_per_s']:.0f} tok/s, peak RSS {fast['peak_rss_gb']:.1f} GB, "
        f"max |loss diff| over the steps {drift:.3f}",
        speed_ratio=fast["tokens_per_s"] / base["tokens_per_s"],
        losses={"baseline": base["losses"], variant: fast["losses"]},
        floor="reported",
    )
    if variant in ("full_fp32", "full_bf16", "full_bf16_ckpt"):
        assert drift < 0.1  # the same optimisation, not another one


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1])))
