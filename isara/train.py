"""Step 7: supervised fine-tuning of M(k-1) into M(k): answer tokens only, loss scaled by weight."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from isara.config import TrainParams
from isara.errors import IsaraError
from isara.icl import FORMATS, answer_prompt

log = logging.getLogger(__name__)
IGNORE = -100


def encode(tokenizer, train: pl.DataFrame, fmt: str, max_length: int) -> list[tuple[list[int], list[int], float]]:
    """(input ids, labels with the prompt masked, weight) per example; weight-0 rows are skipped."""
    out = []
    for q, a, w in zip(train["question"], train["answer"], train["weight"], strict=True):
        if w <= 0:
            continue
        p = tokenizer(answer_prompt([], q, fmt), add_special_tokens=False)["input_ids"]
        t = tokenizer(a + FORMATS[fmt]["answer_end"], add_special_tokens=False)["input_ids"]
        ids = (p + t)[:max_length]
        labels = ([IGNORE] * len(p) + t)[:max_length]
        if any(x != IGNORE for x in labels):  # a prompt longer than max_length leaves nothing to learn
            out.append((ids, labels, float(w)))
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


def collate(examples, pad_id: int):
    import torch

    width = max(len(ids) for ids, _, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y, _) in enumerate(examples):
        ids[row, : len(x)], labels[row, : len(y)], mask[row, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    weights = torch.tensor([w for _, _, w in examples], dtype=torch.float32)
    return ids, mask, labels, weights


def weighted_loss(logits, labels, weights):
    """Mean token loss of each example, scaled by its weight, averaged over the batch."""
    import torch.nn.functional as F

    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    tok = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    mask = (labels != IGNORE).float()
    per_example = (tok * mask).sum(1) / mask.sum(1).clamp(min=1)
    return (per_example * weights).mean()


def lora_wrap(model, cfg: TrainParams):
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=targets)
    return get_peft_model(model, lora)


def train(model, tokenizer, data: pl.DataFrame, cfg: TrainParams, k: int, seed: int, fmt: str):
    """Fine-tune in place; returns (trained model, per-step log rows)."""
    import torch

    torch.manual_seed(seed + k)
    rng = np.random.default_rng(seed + k)
    examples = encode(tokenizer, data, fmt, cfg.max_length)
    lr = cfg.lr * cfg.lr_decay ** (k - 1)  # the authors halve the learning rate every iteration
    if cfg.method == "lora":
        model = lora_wrap(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    lengths = [len(ids) for ids, _, _ in examples]
    plan = [b for _ in range(cfg.epochs) for b in batches(lengths, cfg.batch_size, rng)]
    log.info("training it%d: %d examples, %d steps, lr %.2e, %s", k, len(examples), len(plan), lr, cfg.method)
    history = []
    for step, idx in enumerate(tqdm(plan, desc=f"train it{k}", unit="step"), start=1):
        ids, mask, labels, weights = collate([examples[i] for i in idx], tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = weighted_loss(logits, labels, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(
            {
                "step": step,
                "epoch": 1 + (step - 1) * cfg.epochs // max(len(plan), 1),
                "loss": round(loss.item(), 6),
                "tokens": int(mask.sum()),
            }
        )
    if cfg.method == "lora":
        model = model.merge_and_unload()
    model.eval()
    return model, history


def summary(history: list[dict], epochs: int) -> dict:
    losses = [h["loss"] for h in history]
    last = losses[-max(1, len(losses) // epochs) :]
    return {
        "steps": len(history),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_mean_last_epoch": round(sum(last) / len(last), 6),
    }


def fit(params, init: Path, data: pl.DataFrame, k: int, out: Path, metrics_dir: Path) -> dict:
    """Load `init`, fine-tune it on `data` as iteration k, save to `out`, write loss metrics."""
    from isara.models import load_model, save_model, set_threads
    from isara.paths import write_csv, write_json

    set_threads(params.model.threads)
    model, tok = load_model(init, params.model.trust_remote_code)
    model, history = train(model, tok, data, params.train, k, params.seed, params.model.chat_format)
    if not history:
        raise IsaraError(
            f"train: no example with a positive weight and an answer within {params.train.max_length} tokens"
        )
    save_model(model, tok, out)
    stats = summary(history, params.train.epochs)
    write_csv(metrics_dir / "train_loss.csv", history)
    write_json(metrics_dir / "train.json", stats)
    return stats
