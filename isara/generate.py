"""Batched generation: left-padded, length-sorted batches, seeded per batch, under inference_mode."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tqdm import tqdm

from isara.config import GenerateParams
from isara.icl import FORMATS, clean

log = logging.getLogger(__name__)


def stop_ids(tokenizer, fmt: str) -> list[int]:
    """Token ids that end a turn in this chat format, plus the model's EOS."""
    ids = {tokenizer.eos_token_id}
    if fmt == "chatml":
        ids.add(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return sorted(i for i in ids if i is not None and i >= 0)


def token_counter(tokenizer):
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def generate(
    model, tokenizer, prompts: Sequence[str], cfg: GenerateParams, seed: int, fmt: str, desc: str
) -> tuple[list[str], list[str]]:
    """Continue every prompt; returns (raw continuations, cleaned texts) in prompt order."""
    import torch

    tokenizer.padding_side = "left"
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    # Sorting by length keeps padding (wasted compute) small inside each batch.
    order = sorted(range(len(prompts)), key=lambda i: (len(enc[i]), i))
    raw: list[str] = [""] * len(prompts)
    kwargs = dict(
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.do_sample,
        num_beams=cfg.num_beams,
        repetition_penalty=cfg.repetition_penalty,
        no_repeat_ngram_size=cfg.no_repeat_ngram_size,
        eos_token_id=stop_ids(tokenizer, fmt),
        pad_token_id=tokenizer.pad_token_id,
    )
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    model.eval()
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        for b, start in enumerate(range(0, len(order), cfg.batch_size)):
            idx = order[start : start + cfg.batch_size]
            batch = tokenizer.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt")
            torch.manual_seed(seed * 1_000_003 + b)  # seeded per batch: reruns sample the same text
            out = model.generate(**batch, **kwargs)
            new = out[:, batch["input_ids"].shape[1] :]
            for i, seq in zip(idx, new, strict=True):
                raw[i] = tokenizer.decode(seq, skip_special_tokens=False)
            bar.update(len(idx))
    bar.close()
    end = FORMATS[fmt]["answer_end"]
    return raw, [clean(r.split(end)[0]) for r in raw]
