"""Batched generation: left-padded, length-sorted batches cut where they cost least, seeded per batch."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from tqdm import tqdm

from isara.config import GenerateParams
from isara.icl import FORMATS, clean
from isara.models import use_bf16
from isara.resume import SCRATCH, Scratch

log = logging.getLogger(__name__)


def stop_ids(tokenizer, fmt: str) -> list[int]:
    """Token ids that end a turn in this chat format, plus the model's EOS."""
    ids = {tokenizer.eos_token_id}
    if fmt == "chatml":
        ids.add(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return sorted(i for i in ids if i is not None and i >= 0)


def token_counter(tokenizer):
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


# Cost of a batch in prompt-token units: every padded prompt token is prefilled once, and every
# decoding step costs a fixed part (weights read, dispatch) plus a part per row. Measured on the
# default model on 2 CPU cores: prefill ~690 tokens/s; a decoding step 0.075 s + 0.0035 s per row.
STEP_COST, ROW_COST = 52.0, 2.4


def plan_batches(lengths: Sequence[int], max_rows: int, new_tokens: int) -> list[list[int]]:
    """Prompt indices cut into batches of at most max_rows, cheapest first-to-last partition.

    Prompts are sorted by length; where a run of short prompts meets a few long ones, a fixed
    batch size would pad every short one to the longest. Dynamic programming over the sorted
    order picks the cut points that minimise padded prefill plus decoding steps.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n = len(order)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        longest = lengths[order[end - 1]]  # sorted: the batch's last row is its longest
        for start in range(max(0, end - max_rows), end):
            rows = end - start
            c = best[start] + longest * rows + new_tokens * (STEP_COST + ROW_COST * rows)
            if c < best[end]:
                best[end], cut[end] = c, start
    spans, end = [], n
    while end > 0:
        spans.append((cut[end], end))
        end = cut[end]
    return [order[a:b] for a, b in reversed(spans)]


def batch_seed(seed: int, b: int) -> int:
    """Sampling seed of planned batch b: fixed by the global plan, not by the worker that runs it."""
    return seed * 1_000_003 + b


class Job(NamedTuple):
    """One planned batch as any backend receives it: its index in the plan, token ids, seed."""

    b: int
    rows: list[list[int]]
    seed: int


class Engine:
    """Generates planned batches outside this process's model (Ray actors, vLLM).

    generate() accepts one in place of a model. Each batch comes with its own seed from the global
    plan, so which worker runs which batch, and in what order, cannot change the texts.
    """

    key = ""  # told apart in the scratch key when it writes other texts than transformers would

    def run(self, jobs: list[Job], cfg: GenerateParams, fmt: str) -> Iterator[tuple[int, list[str]]]:
        raise NotImplementedError


def generate_kwargs(tokenizer, cfg: GenerateParams, fmt: str) -> dict:
    """model.generate() arguments for a config: the same in this process and in every Ray actor."""
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
    # Only when set away from their neutral values, so the default call is the one it always was.
    if cfg.length_penalty != 1.0:
        kwargs.update(length_penalty=cfg.length_penalty)
    if cfg.exponential_decay_length_penalty is not None:
        kwargs.update(exponential_decay_length_penalty=tuple(cfg.exponential_decay_length_penalty))
    return kwargs


def run_batch(model, tokenizer, rows: list[list[int]], kwargs: dict, seed: int) -> list[str]:
    """One planned batch, left-padded and seeded: the body every transformers backend runs."""
    import torch

    batch = tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(model.device)
    torch.manual_seed(seed)  # seeded per batch: a rerun, or another worker, samples the same text
    with torch.inference_mode():
        out = model.generate(**batch, **kwargs)
    new = out[:, batch["input_ids"].shape[1] :]
    return [tokenizer.decode(seq, skip_special_tokens=False) for seq in new]


class Local(Engine):
    """A transformers model in this process, one planned batch after another."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer

    def run(self, jobs: list[Job], cfg: GenerateParams, fmt: str) -> Iterator[tuple[int, list[str]]]:
        import torch

        self.tokenizer.padding_side = "left"
        kwargs = generate_kwargs(self.tokenizer, cfg, fmt)
        self.model.eval()
        if use_bf16(cfg.bf16, self.model.device.type, "bf16 generation"):
            self.model.to(torch.bfloat16)
        elif self.model.dtype == torch.bfloat16:  # fp32 asked for, or no native bf16: a model an earlier bf16
            self.model.to(torch.float32)  # call converted, or a checkpoint stored in bf16, runs fp32
        for job in jobs:
            yield job.b, run_batch(self.model, self.tokenizer, job.rows, kwargs, job.seed)


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    cfg: GenerateParams,
    seed: int,
    fmt: str,
    desc: str,
    model_key: str = "",
) -> tuple[list[str], list[str]]:
    """Continue every prompt; returns (raw continuations, cleaned texts) in prompt order.

    `model` is a transformers model, or an Engine (isara.backends) that runs the batches elsewhere.
    The batch plan and each batch's seed are computed here, once, for all prompts: an engine only
    runs the batches it is handed, so splitting them over workers does not change the data.
    With a model_key (the checkpoint's hash), finished batches persist under .isara/scratch until
    the job completes, and a rerun after a crash regenerates only the unfinished ones.
    """
    engine = model if isinstance(model, Engine) else Local(model, tokenizer)
    tokenizer.padding_side = "left"
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    plan = plan_batches([len(e) for e in enc], cfg.batch_size, cfg.max_new_tokens)
    raw: list[str] = [""] * len(prompts)
    key = model_key + engine.key
    scratch = Scratch(SCRATCH if model_key else None, key, cfg.model_dump_json(), fmt, str(seed), *prompts)
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt")

    def fill(b: int, texts: list[str]) -> None:
        for i, text in zip(plan[b], texts, strict=True):
            raw[i] = text
        bar.update(len(texts))

    jobs = []
    for b, idx in enumerate(plan):
        texts = scratch.get(b)
        if texts is None:
            jobs.append(Job(b, [enc[i] for i in idx], batch_seed(seed, b)))
        else:
            fill(b, texts)
    pending = {j.b for j in jobs}
    for b, texts in engine.run(jobs, cfg, fmt):
        scratch.put(b, texts)
        fill(b, texts)
        pending.discard(b)
    bar.close()
    if pending:
        raise RuntimeError(f"{desc}: the generation backend returned no texts for batches {sorted(pending)}")
    if len(jobs) < len(plan):
        log.info("%s: resumed %d finished batch(es) from %s", desc, len(plan) - len(jobs), scratch.dir)
    scratch.clear()
    end = FORMATS[fmt]["answer_end"]
    return raw, [clean(r.split(end)[0]) for r in raw]
