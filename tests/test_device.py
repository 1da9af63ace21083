"""model.device: generation and training on the device params name, and a clear refusal of one that is missing.

The CUDA tests run where torch sees a GPU (the device check in docs/scaling-generation.md) and are
skipped here; the rest run everywhere.
"""

from __future__ import annotations

import pytest
import torch

from isara.config import GenerateParams, TrainParams
from isara.errors import IsaraError
from isara.generate import generate, run_batch
from isara.models import torch_device
from tools.gpu_check import SHAPES

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch sees no CUDA device")


@pytest.mark.skipif(CUDA, reason="this machine has a GPU")
def test_a_gpu_torch_cannot_see_is_refused_on_one_line() -> None:
    with pytest.raises(IsaraError) as err:
        torch_device("cuda")
    assert "model.device=cuda" in str(err.value) and "\n" not in str(err.value)


def test_the_device_param_takes_cpu_and_cuda_only() -> None:
    from isara.config import ModelParams

    assert ModelParams(device="cuda:1").device == "cuda:1"
    assert ModelParams().device == "cpu"
    with pytest.raises(ValueError, match="device"):
        ModelParams(device="gpu")


def test_a_batch_goes_to_the_models_device() -> None:
    """run_batch moves the padded batch to model.device (the meta device stands in for a GPU)."""

    class Tok:
        def pad(self, enc, return_tensors):
            from transformers import BatchEncoding

            ids = torch.tensor(enc["input_ids"])
            return BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})

        def decode(self, seq, skip_special_tokens):
            return str(seq.tolist())

    class Model:
        device = torch.device("meta")

        def generate(self, input_ids, attention_mask, **kw):
            self.seen = input_ids.device
            return torch.zeros((input_ids.shape[0], input_ids.shape[1] + 1), dtype=torch.long)

    model = Model()
    run_batch(model, Tok(), [[1, 2], [3, 4]], {}, seed=0)
    assert model.seen == torch.device("meta")


WORDS = "what is plus it question very important the a of to".split() + [str(i) for i in range(40)]


def tiny_llama(device: str):
    """A random two-layer Llama and a word-level tokenizer built here: no files, no model package."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "</s>", *WORDS, "?", ".", ":"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    cfg = LlamaConfig(vocab_size=len(vocab), **SHAPES["llama-tiny"])
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(device).eval(), tok


@needs_cuda
def test_sampled_generation_on_the_gpu_repeats_itself() -> None:
    model, tok = tiny_llama("cuda")
    cfg = GenerateParams(max_new_tokens=12, batch_size=4, do_sample=True, temperature=0.9, top_p=0.95)
    prompts = [f"question {i}: what is {'very ' * i}important?" for i in range(10)]
    first = generate(model, tok, prompts, cfg, seed=3, fmt="plain", desc="gpu")
    again = generate(model, tok, prompts, cfg, seed=3, fmt="plain", desc="gpu")
    assert first == again and next(model.parameters()).device.type == "cuda"


@needs_cuda
def test_training_on_the_gpu_learns_and_repeats_itself() -> None:
    import polars as pl

    from isara.train import train

    data = pl.DataFrame(
        {"question": [f"What is {i} plus {i}?" for i in range(16)], "answer": [f"It is {2 * i}." for i in range(16)]}
    ).with_columns(pl.lit(1.0).alias("weight"))
    cfg = TrainParams(lr=1e-3, epochs=4, batch_size=4, max_length=64, bf16=True, checkpoint_every=0)
    runs = []
    for _ in range(2):
        model, tok = tiny_llama("cuda")
        model, history = train(model, tok, data, cfg, k=1, seed=0, fmt="plain")
        runs.append(([h["loss"] for h in history], next(model.parameters()).detach().cpu()))
    (losses, weights), (losses2, weights2) = runs
    assert losses[-1] < losses[0]
    assert losses == losses2 and torch.equal(weights, weights2)
