"""Step 7's loss, shared by one-process and several-process training: answer tokens only, per-example weights."""

from __future__ import annotations

IGNORE = -100  # label of a position that carries no loss (prompt, padding)


def collate(examples, pad_id: int):
    """Right-padded (ids, attention mask, labels, weights) tensors of (ids, labels, weight) examples."""
    import torch

    width = max(len(ids) for ids, _, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y, _) in enumerate(examples):
        ids[row, : len(x)], labels[row, : len(y)], mask[row, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    weights = torch.tensor([w for _, _, w in examples], dtype=torch.float32)
    return ids, mask, labels, weights


# Architectures whose causal-LM forward is exactly head(decoder(x)): for them the head runs only at
# answer positions. Others (e.g. Gemma-2's logit soft-capping) go through the model's own forward.
PLAIN_HEAD = ("llama", "mistral", "qwen2", "qwen3")


def step_loss(model, ids, mask, labels, weights, n: float | None = None):
    """Mean answer-token loss of each example, scaled by its weight, averaged over the batch.

    Prompt and padding positions never need logits, and on CPU the vocabulary-wide logits of every
    position are a large part of a step's time (~14% of the step here, BENCHMARKS.md). A process
    training on a slice of a batch passes `n` to divide by in place of the slice's size: the mean
    is over the whole batch's examples, whatever their weights (isara/distributed.py).
    """
    import torch.nn.functional as F

    labels = labels[:, 1:]
    keep = labels != IGNORE
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # through a LoRA wrapper
    if base.config.model_type in PLAIN_HEAD:
        hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])
    else:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1][keep]
    tok = F.cross_entropy(logits.float(), labels[keep], reduction="none")
    per_example = tok.new_zeros(labels.shape[0]).index_add_(0, keep.nonzero()[:, 0], tok)
    per_example = per_example / keep.sum(1).clamp(min=1)
    weighted = per_example * weights
    return weighted.mean() if n is None else weighted.sum() / n
