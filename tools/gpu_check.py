"""The GPU check: the paper profile's first proposal batch on one card, per generation backend.

Two steps, because the GPU machine may have neither the pipeline's data nor its model:

    python tools/gpu_check.py prepare --out gpu_check            # here, after `dvc repro prepare_model init_pool`
    python tools/gpu_check.py run --dir gpu_check --model FOLDER --out result.json   # on the GPU machine

`prepare` builds the paper profile's iteration-1 proposal prompts with the propose stage's own code
(the seed pool, 8 in-context examples, the prompt budget), cuts them into batches with the stage's
own plan, and keeps the first batch with the tokenizer that counted it. `run` generates that batch
with the transformers backend (batched, then the first rows one prompt at a time, as the baseline)
and, where vLLM is installed, with the vllm backend, and reports new tokens per second for each.
`--random-init llama-7b` stands in a randomly initialised model of LLaMA-7B's shape when the weights
are not on the machine: the speed of a forward pass does not depend on the values of the weights.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from isara.errors import IsaraError

log = logging.getLogger("gpu_check")

# LLaMA-7B's shape (huggyllama/llama-7b config.json); the vocabulary is the carried tokenizer's.
SHAPES = {
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "llama-tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
}


def prepare(profile: Path, base: Path, pool: Path, tokenizer: Path, out: Path) -> dict:
    """Write out/batch.json (the first planned proposal batch and its settings) and out/tokenizer/."""
    import yaml

    from isara import schema
    from isara.config import apply_profile, parse_params
    from isara.generate import plan_batches, token_counter
    from isara.models import load_tokenizer
    from isara.propose import prompts_for
    from isara.resume import part_seed

    params = parse_params(yaml.safe_load(apply_profile(base, profile)), str(profile))
    tok = load_tokenizer(tokenizer)
    p = params.propose
    pool_rows = schema.read(pool, schema.POOL)
    fmt = params.model.chat_format
    prompts, _ = prompts_for(tok, pool_rows, p, fmt, params.contexts, params.seed, 1, p.n, params.allocation)
    lengths = list(map(token_counter(tok), prompts))
    plan = plan_batches(lengths, params.propose.batch_size, params.propose.max_new_tokens)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out / "tokenizer")
    batch = {
        "profile": str(profile),
        "propose": params.propose.model_dump(),
        "chat_format": params.model.chat_format,
        "seed": part_seed(params.seed + 1, 0),
        "batches_in_plan": len(plan),
        "prompts": [prompts[i] for i in plan[0]],
    }
    (out / "batch.json").write_text(json.dumps(batch, indent=1), encoding="utf-8")
    return batch


def _model(model: str | None, shape: str | None, tok, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from isara.models import load_model, torch_device

    if model:
        return load_model(model, device=device)[0].to(torch.bfloat16)
    torch_device(device)
    cfg = LlamaConfig(vocab_size=len(tok), **SHAPES[shape], pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(cfg).to(torch.bfloat16).eval()


def _count_new_tokens(net) -> list[int]:
    """Wrap net.generate to record the tokens each call made: up to a row's stop token, not its padding."""
    import torch

    counted: list[int] = []
    plain = net.generate

    def counting(**kw):
        out = plain(**kw)
        new = out[:, kw["input_ids"].shape[1] :]
        stop = torch.isin(new, torch.tensor(kw["eos_token_id"], device=new.device))
        length = torch.where(stop.any(1), stop.int().argmax(1) + 1, new.shape[1])
        counted.append(int(length.sum()))
        return out

    net.generate = counting
    return counted


def _timed(fn) -> tuple[object, float]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def run(folder: Path, model: str | None, shape: str | None, device: str, one_by_one: int) -> dict:
    """Generate the prepared batch per backend; new tokens per second, with the counts behind them."""
    import torch
    from transformers import AutoTokenizer

    from isara.config import ProposeParams
    from isara.generate import generate

    batch = json.loads((folder / "batch.json").read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    tok.pad_token = tok.pad_token or tok.eos_token
    cfg = ProposeParams(**{**batch["propose"], "bf16": True})  # 16-bit on a GPU, as vLLM runs it
    prompts, seed, fmt = batch["prompts"], batch["seed"], batch["chat_format"]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    net = _model(model, shape, tok, device)
    counted = _count_new_tokens(net)

    def go(rows: list[str], size: int) -> int:
        counted.clear()
        c = cfg.model_copy(update={"batch_size": size})
        generate(net, tok, rows, c, seed, fmt, f"transformers x{size}")
        return sum(counted)

    go(prompts[:2], 2)  # warm-up: kernels compiled and cached before any timing
    result = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "model": model or f"random-init {shape}",
        "prompts": len(prompts),
        "max_new_tokens": cfg.max_new_tokens,
        "prompt_tokens": sum(map(len, ids)),
        "backends": {},
    }
    n, secs = _timed(lambda: go(prompts, cfg.batch_size))
    result["backends"]["transformers"] = {"seconds": round(secs, 3), "new_tokens": n}
    few = prompts[:one_by_one]
    n, secs = _timed(lambda: go(few, 1))
    result["backends"]["transformers, one prompt at a time"] = {
        "prompts": len(few),
        "seconds": round(secs, 3),
        "new_tokens": n,
    }
    if importlib.util.find_spec("vllm") is None:
        result["backends"]["vllm"] = {"skipped": "vLLM is not installed on this machine (pip install 'isara[vllm]')"}
    elif refused := _vllm_refuses(cfg):
        result["backends"]["vllm"] = {"skipped": refused}  # e.g. the paper profile's beam sample
    else:
        result["backends"]["vllm"] = _vllm(net, tok, ids, cfg, seed, fmt, folder)
    for b in result["backends"].values():
        if "seconds" in b:
            b["new_tokens_per_s"] = round(b["new_tokens"] / b["seconds"], 1)
    return result


def _vllm_refuses(cfg) -> str:
    """Why the vllm backend would stop on these settings, or "" when it runs them."""
    from isara.backends import check_vllm

    try:
        check_vllm(cfg)
    except IsaraError as err:
        return str(err)
    return ""


def _vllm(net, tok, ids: list[list[int]], cfg, seed: int, fmt: str, folder: Path) -> dict:
    """The same batch through the vllm backend: the weights are saved once for vLLM to read."""
    from isara.backends import Vllm
    from isara.config import ScaleParams
    from isara.generate import Job, token_counter

    weights = folder / "weights"
    net.save_pretrained(weights, safe_serialization=True)
    tok.save_pretrained(weights)
    engine = Vllm(weights, ScaleParams(engine="vllm"))
    job = [Job(0, ids, seed)]
    list(engine.run(job[:1], cfg.model_copy(update={"max_new_tokens": 4}), fmt))  # start-up, not timed
    out, secs = _timed(lambda: dict(engine.run(job, cfg, fmt)))
    shutil.rmtree(weights, ignore_errors=True)
    # vLLM's texts, tokenized again: near the tokens it made, capped at max_new_tokens a row
    count = token_counter(tok)
    made = [min(count(r), cfg.max_new_tokens) for r in out[0]]
    return {"seconds": round(secs, 3), "new_tokens": sum(made), "new_tokens_counted_by": "re-tokenizing its texts"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python tools/gpu_check.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="here: the first proposal batch of a profile, and its tokenizer")
    p.add_argument("--profile", type=Path, default=Path("profiles/paper.yaml"))
    p.add_argument("--base", type=Path, default=Path("params.yaml"))
    p.add_argument("--pool", type=Path, default=Path("data/it0/pool.parquet"))
    p.add_argument("--tokenizer", type=Path, default=Path("models/it0"), help="a model folder whose tokenizer to use")
    p.add_argument("--out", type=Path, default=Path("gpu_check"))
    r = sub.add_parser("run", help="on the GPU machine: generate the batch with each backend, report tokens/s")
    r.add_argument("--dir", type=Path, default=Path("gpu_check"))
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a local model folder")
    which.add_argument("--random-init", choices=sorted(SHAPES), help="a random model of this shape")
    r.add_argument("--device", default="cuda")
    r.add_argument("--one-by-one", type=int, default=8, help="prompts of the one-at-a-time baseline")
    r.add_argument("--out", type=Path, help="also write the result here (JSON)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.step == "prepare":
            batch = prepare(args.profile, args.base, args.pool, args.tokenizer, args.out)
            log.info(
                "wrote %d prompts (1 of %d batches) to %s", len(batch["prompts"]), batch["batches_in_plan"], args.out
            )
            return
        result = run(args.dir, args.model, args.random_init, args.device, args.one_by_one)
    except IsaraError as err:
        sys.exit(f"isara: error: {err}")
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
