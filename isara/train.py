"""Step 7: supervised fine-tuning of M(k-1) into M(k): answer tokens only, loss scaled by weight."""

from __future__ import annotations

import logging
import math
import os
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from isara.config import TrainParams
from isara.distributed import Group, is_main, local_processes
from isara.errors import IsaraError
from isara.icl import FORMATS, answer_prompt
from isara.loss import IGNORE, collate, step_loss
from isara.models import use_bf16
from isara.resume import SCRATCH, Scratch, code_ref, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def tokenize_rows(
    tokenizer, train: pl.DataFrame, fmt: str, max_length: int
) -> list[tuple[list[int], list[int], float]]:
    """(input ids, labels with the prompt masked, weight) per example; weight-0 rows are skipped.

    An example longer than max_length is cut at its end; one whose prompt alone fills max_length
    leaves nothing to learn and is dropped. Both are counted in the log.
    """
    out, cut, dropped = [], 0, 0
    for q, a, w in zip(train["question"], train["answer"], train["weight"], strict=True):
        if w <= 0:
            continue
        p = tokenizer(answer_prompt([], q, fmt), add_special_tokens=False)["input_ids"]
        t = tokenizer(a + FORMATS[fmt]["answer_end"], add_special_tokens=False)["input_ids"]
        ids = (p + t)[:max_length]
        labels = ([IGNORE] * len(p) + t)[:max_length]
        cut += len(p) + len(t) > max_length
        if any(x != IGNORE for x in labels):
            out.append((ids, labels, float(w)))
        else:
            dropped += 1
    if cut:
        log.warning("train: %d example(s) longer than max_length=%d tokens cut at the end, %d of them dropped "
                    "(the question alone fills max_length)", cut, max_length, dropped)  # fmt: skip
    return out


def batches(lengths: list[int], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: padding is compute the CPU spends on nothing.

    Examples are shuffled, sorted by length inside windows of 4 batches, cut into batches, and the
    batch order shuffled again, so batches stay random across epochs but pad little.
    """
    perm = rng.permutation(len(lengths))
    window = size * 4
    grouped = (
        np.concatenate([sorted(perm[i : i + window], key=lambda j: lengths[j]) for i in range(0, len(perm), window)])
        if len(perm)
        else perm
    )
    out = [grouped[i : i + size] for i in range(0, len(grouped), size)]
    return [out[i] for i in rng.permutation(len(out))]


def lora_wrap(model, cfg: TrainParams):
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=targets)
    return get_peft_model(model, lora)


def planned_steps(tokenizer, data: pl.DataFrame, cfg: TrainParams, fmt: str) -> int:
    """Optimizer steps a round on `data` takes: what the schedule-matched SFT control trains for."""
    return plan_steps(len(tokenize_rows(tokenizer, data, fmt, cfg.max_length)), cfg)


def plan_steps(n_examples: int, cfg: TrainParams) -> int:
    """Optimizer steps of a round on n_examples: epochs x ceil(n / batch_size) batches, grad_accum a step."""
    per_epoch = -(-n_examples // cfg.batch_size)
    return -(-cfg.epochs * per_epoch // cfg.grad_accum)


def plan(lengths: list[int], cfg: TrainParams, rng: np.random.Generator, steps: int | None = None):
    """The round's optimizer steps, each a list of (batch, its epoch): cfg.epochs over the examples,
    or, with `steps`, as many shuffled epochs as it takes to fill that many steps."""
    if not lengths:
        return []
    per_epoch = -(-len(lengths) // cfg.batch_size)
    want = cfg.epochs * per_epoch if steps is None else steps * cfg.grad_accum
    flat: list[np.ndarray] = []
    while len(flat) < want:
        flat += batches(lengths, cfg.batch_size, rng)
    pairs = [(b, 1 + i // per_epoch) for i, b in enumerate(flat[:want])]
    return [pairs[i : i + cfg.grad_accum] for i in range(0, len(pairs), cfg.grad_accum)]


def schedule_factor(step: int, kind: str, warmup: int, total: int) -> float:
    """The learning rate's factor at optimizer step `step` (from 0), as transformers' schedules:
    linear warm-up from 0 over `warmup` steps, then constant or cosine decay to 0 at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def scheduler(opt, cfg: TrainParams, total: int):
    """A LambdaLR over the round's `total` optimizer steps; None for a constant rate with no warm-up,
    so the default round makes exactly the optimizer calls it always made."""
    import torch

    if cfg.schedule == "constant" and cfg.warmup_steps == 0:
        return None
    factor = partial(schedule_factor, kind=cfg.schedule, warmup=cfg.warmup_steps, total=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _step(model, opt, examples: list, group: list[np.ndarray], pad_id: int, bf16: bool) -> tuple[float, int]:
    """One optimizer step on a group of planned batches in this process; (its loss, its tokens).

    Each batch's loss is divided by the group's rows, so the summed gradients are those of one batch
    holding all of them; a group of one batch keeps the batch mean, the call it always was.
    """
    import torch

    device = next(model.parameters()).device
    n = sum(len(idx) for idx in group) if len(group) > 1 else None
    total, tokens = 0.0, 0
    for j, idx in enumerate(group):
        ids, mask, labels, weights = (t.to(device) for t in collate([examples[i] for i in idx], pad_id))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_loss(model, ids, mask, labels, weights, n)
        if j == 0:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        total, tokens = total + loss.item(), tokens + int(mask.sum())
    opt.step()
    return total, tokens


def train(
    model,
    tokenizer,
    data: pl.DataFrame,
    cfg: TrainParams,
    k: int,
    seed: int,
    fmt: str,
    checkpoints: Path | None = None,
    steps: int | None = None,
):
    """Fine-tune in place; returns (trained model, one log row per optimizer step).

    With a `checkpoints` folder and `cfg.checkpoint_every`, the state is saved there at that step
    interval and a rerun resumes from it: the result is the same as that of an uninterrupted run.
    With `steps`, the round takes that many optimizer steps, cycling shuffled epochs of `data`
    (the schedule-matched SFT control). With cfg.processes > 1 this is one of the processes
    accelerate launched (isara/distributed.py).
    """
    import torch

    group = Group(cfg) if cfg.processes > 1 else None
    if group and checkpoints and cfg.checkpoint_every:
        log.warning("train: checkpoint_every is not used with processes > 1; a killed run starts over")
        checkpoints = None
    torch.manual_seed(seed + k)
    rng = np.random.default_rng(seed + k)
    examples = tokenize_rows(tokenizer, data, fmt, cfg.max_length)
    lr = cfg.lr * cfg.lr_decay ** (k - 1)  # the authors halve the learning rate every iteration
    if cfg.method == "lora":
        model = lora_wrap(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # The fused kernel updates all weights in one pass: 0.07 s per step here against 0.37 s for the
    # per-tensor loop (135M weights), with the same AdamW update.
    opt = torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, fused=True)
    steps_plan = plan([len(ids) for ids, _, _ in examples], cfg, rng, steps)
    sched = scheduler(opt, cfg, len(steps_plan))
    recipe = f" ({cfg.grad_accum} batches a step, {cfg.schedule} lr, {cfg.warmup_steps} warm-up steps)"
    log.info("training it%d: %d examples, %d steps, lr %.2e, %s%s", k, len(examples), len(steps_plan), lr,
             cfg.method, "" if sched is None and cfg.grad_accum == 1 else recipe)  # fmt: skip
    resume = checkpoints and cfg.checkpoint_every
    done, history = load_checkpoint(checkpoints, model, opt, sched) if resume else (0, [])
    run = group.prepare(model, opt) if group else partial(_step, model, opt)
    # Decided once for the round, on the device its steps run on (bf16 only where the hardware has it).
    bf16 = use_bf16(cfg.bf16, (group.acc.device if group else next(model.parameters()).device).type, "train.bf16")
    quiet = group is not None and not group.main
    bar = tqdm(steps_plan[done:], desc=f"train it{k}", unit="step", initial=done, total=len(steps_plan), disable=quiet)
    for step, pairs in enumerate(bar, start=done + 1):
        loss, tokens = run(examples, [b for b, _ in pairs], tokenizer.pad_token_id, bf16)
        if sched is not None:
            sched.step()
        history.append({"step": step, "epoch": pairs[-1][1], "loss": round(loss, 6), "tokens": tokens})
        if resume and step % cfg.checkpoint_every == 0 and step < len(steps_plan):
            save_checkpoint(checkpoints, model, opt, step, history, sched)
    if group:
        group.close()
    if cfg.method == "lora":
        model = model.merge_and_unload()
    model.eval()
    return model, history


def summary(history: list[dict]) -> dict:
    """train.json: steps, first and last loss, and the mean loss of the last epoch's steps."""
    losses = [h["loss"] for h in history]
    last = [h["loss"] for h in history if h["epoch"] == history[-1]["epoch"]]
    return {
        "steps": len(history),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_mean_last_epoch": round(sum(last) / len(last), 6),
    }


def fit(
    cfg: TrainParams,
    init: Path,
    data: pl.DataFrame,
    k: int,
    out: Path,
    metrics_dir: Path,
    *,
    seed: int,
    fmt: str,
    device: str,
    threads: int,
    trust_remote_code: bool,
    steps: int | None = None,
) -> dict:
    """Load `init`, fine-tune it on `data` as iteration k, save to `out`, write loss metrics.

    With `steps`, train that many optimizer steps whatever cfg.epochs says (see train()).
    """
    from isara.models import load_model, model_ref, save_model, set_threads
    from isara.paths import write_csv, write_json

    # 0 = all cores, shared by the training processes on this machine
    set_threads(threads or max(1, (os.cpu_count() or 1) // local_processes(cfg)))
    # several processes: accelerate puts each one's copy on its own device (isara/distributed.py)
    model, tok = load_model(init, trust_remote_code, device if cfg.processes == 1 else "cpu")
    checkpoints = None
    if cfg.checkpoint_every:  # keyed by everything that decides the result
        key = [model_ref(init), code_ref(), cfg.model_dump_json(exclude={"checkpoint_every"}), str(k), str(seed), fmt]
        key.append(str(steps))
        rows = zip(data["question"], data["answer"], data["weight"], strict=True)
        checkpoints = Scratch(SCRATCH, "train", *key, *(f"{q}\x1f{a}\x1f{w!r}" for q, a, w in rows)).dir
    model, history = train(model, tok, data, cfg, k, seed, fmt, checkpoints, steps)
    if not history:
        raise IsaraError(f"train: no example with a positive weight and an answer within {cfg.max_length} tokens")
    stats = summary(history)
    if is_main(cfg):  # the other training processes hold the same weights and loss log
        save_model(model, tok, out)
        write_csv(metrics_dir / "train_loss.csv", history)
        write_json(metrics_dir / "train.json", stats)
        if checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)  # the result is saved: the checkpoint is spent
    return stats
