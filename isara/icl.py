"""In-context prompts built only from example Q/A pairs: no instruction text, ever (paper §3)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)
Pair = tuple[str, str]

# Each format: how a turn looks, where a question / answer turn opens, and which strings end a turn.
FORMATS = {
    "chatml": {
        "user": "<|im_start|>user\n{}<|im_end|>\n",
        "assistant": "<|im_start|>assistant\n{}<|im_end|>\n",
        "open_user": "<|im_start|>user\n",
        "open_assistant": "<|im_start|>assistant\n",
        "answer_end": "<|im_end|>",
    },
    "plain": {
        "user": "Question: {}\n",
        "assistant": "Answer: {}\n\n",
        "open_user": "Question:",
        "open_assistant": "Answer:",
        "answer_end": "\n\n",
    },
}
# Anything that starts a new turn ends the text the model was asked for.
MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "</s>", "\nQuestion:", "\nAnswer:", "Question:", "Answer:")


def conversation(pairs: Sequence[Pair], fmt: str) -> str:
    f = FORMATS[fmt]
    return "".join(f["user"].format(q) + f["assistant"].format(a) for q, a in pairs)


def propose_prompt(pairs: Sequence[Pair], fmt: str) -> str:
    """Example pairs, then an open user turn: the continuation is a new question."""
    return conversation(pairs, fmt) + FORMATS[fmt]["open_user"]


def answer_prompt(pairs: Sequence[Pair], question: str, fmt: str) -> str:
    """Example pairs (nearest last), then the question and an open assistant turn."""
    f = FORMATS[fmt]
    return conversation(pairs, fmt) + f["user"].format(question) + f["open_assistant"]


def clean(text: str) -> str:
    """Cut a continuation at the first role marker or special token."""
    cut = len(text)
    for marker in MARKERS:
        pos = text.find(marker)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut].strip()


def quotas(sets: Sequence[int], contexts: int) -> dict[int, int]:
    """Examples per pool set under `allocation: stratified`, keyed by the set's `iteration` (0 = the seed).

    As the authors' generate.py: each generated set D1..D(k-1) gives one example and the seed gives the
    rest, contexts - (k-1); at k=3 with 8 contexts, 6 + 1 + 1. The seed never gives fewer than one:
    when contexts leaves no room for every generated set, the most recent ones keep their slot.
    """
    generated = sorted(s for s in set(sets) if s != 0)
    kept = generated[len(generated) - min(len(generated), contexts - 1) :]
    return {0: contexts - len(kept), **{s: 1 for s in kept}}


def fit_prompt(pairs: list[Pair], build: Callable[[list[Pair]], str], n_tokens: Callable[[str], int], limit: int):
    """Drop examples from the front (the farthest / oldest) until the prompt fits `limit` tokens."""
    pairs = list(pairs)
    prompt = build(pairs)
    while pairs and n_tokens(prompt) > limit:
        pairs = pairs[1:]
        prompt = build(pairs)
    return prompt, len(pairs)


class FitLog:
    """Counts what `fit_prompt` cut from a job's prompts and says so once, in the log."""

    def __init__(self, desc: str, limit: int, n_tokens: Callable[[str], int]):
        self.desc, self.limit, self.n_tokens = desc, limit, n_tokens
        self.prompts = self.short = self.dropped = self.over = 0

    def add(self, wanted: int, kept: int, prompt: str) -> None:
        self.prompts += 1
        self.short += kept < wanted
        self.dropped += wanted - kept
        self.over += kept == 0 and self.n_tokens(prompt) > self.limit

    def report(self) -> None:
        if self.short:
            log.warning("%s: %d of %d prompts dropped %d in-context example(s) in all to fit max_prompt_tokens=%d",
                        self.desc, self.short, self.prompts, self.dropped, self.limit)  # fmt: skip
        if self.over:
            log.warning("%s: %d prompt(s) exceed max_prompt_tokens=%d with no example left (kept as they are)",
                        self.desc, self.over, self.limit)  # fmt: skip
