"""In-context prompts built only from example Q/A pairs: no instruction text, ever (paper §3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def fit(pairs: list[Pair], build: Callable[[list[Pair]], str], n_tokens: Callable[[str], int], limit: int):
    """Drop examples from the front (the farthest / oldest) until the prompt fits `limit` tokens."""
    pairs = list(pairs)
    prompt = build(pairs)
    while pairs and n_tokens(prompt) > limit:
        pairs = pairs[1:]
        prompt = build(pairs)
    return prompt, len(pairs)
