"""OpenVINO as a CPU generation engine: the checkpoint converted once, decoded as transformers decodes.

OpenVINO runs the forward pass (a stateful KV cache, f32 pinned); the loop around it applies
transformers' own logits processors and torch's sampler under each planned batch's seed, as
model.generate does, so fp32 texts are those of isara.generate.Local (docs/cpu-engines.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from isara.config import GenerateParams
from isara.errors import IsaraError
from isara.generate import Engine, Job, stop_ids
from isara.models import load_model, load_tokenizer

log = logging.getLogger(__name__)

Weights = Literal["f32", "int8"]
CONVERTER = 1  # bump when convert() writes another graph: cached IRs of older versions are then missed
CACHE = Path(".isara/openvino")
MODEL_XML = "openvino_model.xml"
# Generation-config keys that would give model.generate a logits processor not built here, with the
# value that leaves it off (transformers' default). A checkpoint setting one is refused, not ignored.
# fmt: off
OTHER_PROCESSORS = {
    "min_length": 0, "min_new_tokens": 0, "min_p": None, "top_h": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "bad_words_ids": None, "sequence_bias": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None, "remove_invalid_values": False, "renormalize_logits": False,
    "guidance_scale": 1.0, "watermarking_config": None,
}
# fmt: on


def _openvino():
    """openvino, imported with its telemetry off: it would write under ~/intel and try to send an event."""
    sys.modules.setdefault("openvino_telemetry", None)  # openvino's converter and nncf then use their stubs
    try:
        import openvino
    except ImportError:
        raise IsaraError("the openvino engine: OpenVINO is not installed (pip install 'isara[openvino]')") from None
    return openvino


# --- conversion -------------------------------------------------------------------------------


def _kv(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def _flat(model):
    """The causal LM with its KV cache as flat tensors in and out: what a traced graph can take."""
    import torch
    from transformers import DynamicCache

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(config=self.model.config)
            for i, layer in enumerate(cache.layers):  # set, not update(): update() fails the trace on aten::cat
                layer.keys, layer.values = past[2 * i], past[2 * i + 1]
                layer.device, layer.is_initialized = past[2 * i].device, True
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,  # generate reads the last position only; the full logits cost prefill time
            )
            return (out.logits, *[t for layer in out.cache.layers for t in (layer.keys, layer.values)])

    return Flat()


def _trace(ov, model):
    """model as an OpenVINO graph with inputs ids, mask, positions, past KV; outputs last logits, present KV."""
    import torch

    cfg = model.config
    layers, heads = cfg.num_hidden_layers, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    # Branches taken at trace time are fixed in the graph: the example has a cache, several new
    # tokens and a left-padded row, so every path that generation takes is kept.
    gen = torch.Generator().manual_seed(0)
    rows, past, new = 2, 3, 4
    ids = torch.randint(3, 1000, (rows, new), generator=gen)
    mask = torch.ones(rows, past + new, dtype=torch.long)
    mask[1, :2] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
    cache = [torch.randn(rows, heads, past, head_dim, generator=gen) for _ in range(2 * layers)]
    shapes = [(ov.PartialShape([-1, -1]), ov.Type.i64)] * 3
    shapes += [(ov.PartialShape([-1, heads, -1, head_dim]), ov.Type.f32)] * (2 * layers)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # those branches are the ones the example takes
        graph = ov.convert_model(_flat(model), example_input=(ids, mask, pos, *cache), input=shapes)
    for port, name in zip(
        graph.inputs, ["input_ids", "attention_mask", "position_ids", *_kv("past", layers)], strict=True
    ):
        port.get_tensor().set_names({name})
    for port, name in zip(graph.outputs, ["logits", *_kv("present", layers)], strict=True):
        port.get_tensor().set_names({name})
    return graph


def _make_stateful(ov, graph, layers: int) -> None:
    """The KV cache kept inside the compiled model between steps (what optimum-intel's stateful.py does)."""
    import numpy as np
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    # A beam_idx parameter gathered into every cache input (generation passes 0..rows-1): it changes
    # no value, yet without it a left-padded batch gave NaN logits (measured); with it the CPU plugin
    # runs its fused ScaledDotProductAttentionWithKVCache and the logits match transformers' to ~1e-4.
    beam = ops.parameter(ov.PartialShape([-1]), ov.Type.i32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    graph.add_parameters([beam])
    for name in _kv("past", layers):
        port = graph.input(name)
        users = port.get_target_inputs()
        gathered = ops.gather(port, beam, ops.constant(0))
        for user in users:
            user.replace_source_output(gathered.output(0))
    graph.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(graph, dict(zip(_kv("past", layers), _kv("present", layers), strict=True)))
    # Each generation starts from an empty cache as wide as its batch.
    rows = ops.gather(ops.shape_of(graph.input("input_ids"), output_type="i64"), ops.constant([0]), ops.constant(0))
    for op in graph.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [ops.constant(np.array([d.min_length], dtype=np.int64)) for d in op.get_output_partial_shape(0)]
            zero = ops.constant(0.0, dtype=op.get_output_element_type(0))
            op.set_arguments([ops.broadcast(zero, ops.concat([rows, *dims[1:]], axis=0))])
    graph.validate_nodes_and_infer_types()


def _stable_names(graph) -> None:
    """Names that depend on the graph alone: OpenVINO numbers unnamed nodes with a counter of the process
    (Constant_96159), so a second conversion in the same process would write another XML."""
    graph.set_friendly_name("isara")
    for i, op in enumerate(graph.get_ordered_ops()):
        if re.fullmatch(r"[A-Za-z0-9]+_\d+", op.get_friendly_name()):
            op.set_friendly_name(f"{op.get_type_name()}_{i}")


def convert(folder: Path, out: Path, weights: Weights = "f32", trust_remote_code: bool = False) -> Path:
    """A transformers safetensors checkpoint as an OpenVINO IR folder, offline and byte-deterministic.

    Written under a temporary name beside `out` and renamed into place: an interrupted conversion
    leaves nothing behind.
    """
    ov = _openvino()
    folder, out = Path(folder), Path(out)
    model, _ = load_model(folder, trust_remote_code)  # one line for a missing or damaged checkpoint
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would keep the cache from other users
    try:
        graph = _trace(ov, model.float().eval())
        _make_stateful(ov, graph, model.config.num_hidden_layers)
        if weights == "int8":
            import nncf

            graph = nncf.compress_weights(graph)  # int8, asymmetric, per output channel: every weight
        _stable_names(graph)
        ov.save_model(graph, tmp / MODEL_XML, compress_to_fp16=False)
        (tmp / "isara.json").write_text(json.dumps(_versions(weights), indent=1, sort_keys=True) + "\n", "utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s to OpenVINO %s in %.0f s", folder, weights, time.perf_counter() - start)
    return out


def _versions(weights: Weights) -> dict:
    """What the IR depends on besides the checkpoint: the trace goes through torch and transformers."""
    packages = ["openvino", "torch", "transformers"] + (["nncf"] if weights == "int8" else [])
    return {"converter": CONVERTER, "weights": weights, **{p: importlib.metadata.version(p) for p in packages}}


def checkpoint_hash(folder: Path) -> str:
    """Content hash of every file of a checkpoint folder: weights, config and tokenizer."""
    h = hashlib.sha256()
    try:
        for f in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
            h.update(f"{f.name}\0{f.stat().st_size}\0".encode())
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
    except OSError as err:
        raise IsaraError(f"{folder}: cannot read checkpoint ({type(err).__name__}: {err.strerror})") from None
    return h.hexdigest()


def converted(
    folder: Path, cache_root: Path = CACHE, weights: Weights = "f32", trust_remote_code: bool = False
) -> Path:
    """The checkpoint's IR from the cache, converted only on a miss; processes missing together convert once."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise IsaraError(f"{folder}: not a model folder (config.json missing)")
    key = json.dumps([checkpoint_hash(folder), _versions(weights)], sort_keys=True)
    out = Path(cache_root) / f"{weights}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the IR
        if not (out / MODEL_XML).is_file():
            convert(folder, out, weights, trust_remote_code)
    return out


# --- generation -------------------------------------------------------------------------------


def checkpoint_top_k(folder: Path) -> int:
    """The top-k model.generate samples with (the checkpoint's, else 50); refuses other processors it would add."""
    f = Path(folder) / "generation_config.json"
    raw = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    other = sorted(k for k, off in OTHER_PROCESSORS.items() if raw.get(k, off) not in (None, off))
    if other:
        raise IsaraError(f"{f}: sets {', '.join(other)}, which the openvino engine does not apply")
    return 50 if raw.get("top_k") is None else int(raw["top_k"])


def processors(cfg: GenerateParams, top_k: int, mask):
    """The logits processors model.generate builds for these settings, in its order."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        NoRepeatNGramLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if cfg.repetition_penalty != 1.0:  # as generate builds it: a row's left padding is not penalised
        procs.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty, (mask != 0).int().argmax(dim=1)))
    if cfg.no_repeat_ngram_size > 0:
        procs.append(NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
    if cfg.do_sample:
        if cfg.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(cfg.temperature))
        if top_k:
            procs.append(TopKLogitsWarper(top_k))
        if cfg.top_p < 1.0:
            procs.append(TopPLogitsWarper(cfg.top_p))
    return procs


class OpenVino(Engine):
    """OpenVINO's forward pass, transformers' decoding, one planned batch after another."""

    def __init__(
        self,
        folder: Path,
        weights: Weights = "f32",
        threads: int = 0,
        cache_root: Path = CACHE,
        trust_remote_code: bool = False,
    ) -> None:
        self.ov = _openvino()  # one line, before any work, when the package is missing
        self.folder, self.weights, self.threads, self.cache_root = Path(folder), weights, threads, Path(cache_root)
        self.trust = trust_remote_code
        self.tokenizer = load_tokenizer(self.folder, self.trust)  # one line for a missing checkpoint
        self.key = f"+openvino-{weights}"  # int8 weights write other texts than transformers
        self.requests: dict[str, object] = {}

    def _request(self, precision: str):
        """An infer request on the compiled IR; precision pinned, or this CPU would run bf16 with a u8 cache."""
        if precision not in self.requests:
            core = self.ov.Core()
            ir = converted(self.folder, self.cache_root, self.weights, self.trust) / MODEL_XML
            config = {
                "INFERENCE_PRECISION_HINT": precision,
                "KV_CACHE_PRECISION": precision,
                "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,  # no int8 activations
            }
            if self.threads:  # else every core: several engines on one machine need their share
                config["INFERENCE_NUM_THREADS"] = self.threads
            self.requests[precision] = core.compile_model(core.read_model(ir), "CPU", config).create_infer_request()
        return self.requests[precision]

    def run(self, jobs: list[Job], cfg: GenerateParams, fmt: str) -> Iterator[tuple[int, list[str]]]:
        if cfg.num_beams > 1:
            raise IsaraError(
                f"num_beams={cfg.num_beams}: beam search is not supported by the openvino engine;"
                " set num_beams: 1 or use the transformers engine"
            )
        if not jobs:
            return
        import torch

        self.tokenizer.padding_side = "left"
        top_k = checkpoint_top_k(self.folder)
        stop = torch.tensor(stop_ids(self.tokenizer, fmt))
        request = self._request("bf16" if cfg.bf16 else "f32")
        for job in jobs:
            yield job.b, self._batch(request, job, cfg, top_k, stop)

    def _batch(self, request, job: Job, cfg: GenerateParams, top_k: int, stop) -> list[str]:
        """One left-padded batch, step by step as model.generate's sampling loop runs it."""
        import numpy as np
        import torch

        tok = self.tokenizer
        batch = tok.pad({"input_ids": job.rows}, return_tensors="pt")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        procs = processors(cfg, top_k, mask)
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        pad = torch.tensor(tok.pad_token_id)
        seq, step, unfinished = ids, ids, torch.ones(len(job.rows), dtype=torch.bool)
        beam = np.arange(len(job.rows), dtype=np.int32)  # each row keeps its own cache
        request.reset_state()  # an empty KV cache
        torch.manual_seed(job.seed)  # the planned batch's seed, as run_batch seeds model.generate
        for _ in range(cfg.max_new_tokens):
            request.infer(
                {
                    "input_ids": step.numpy(),
                    "attention_mask": mask.numpy(),
                    "position_ids": pos.numpy(),
                    "beam_idx": beam,
                }
            )
            logits = torch.from_numpy(request.get_output_tensor(0).data[:, -1].copy())
            scores = procs(seq, logits)
            if cfg.do_sample:
                nxt = torch.multinomial(torch.nn.functional.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                nxt = torch.argmax(scores, dim=-1)
            nxt = torch.where(unfinished, nxt, pad)  # a finished row continues with padding
            seq = torch.cat([seq, nxt[:, None]], dim=-1)
            unfinished &= ~torch.isin(nxt, stop)
            if not unfinished.any():
                break
            step, pos = nxt[:, None], pos[:, -1:] + 1
            mask = torch.cat([mask, mask.new_ones(len(job.rows), 1)], dim=-1)
        return [tok.decode(row, skip_special_tokens=False) for row in seq[:, ids.shape[1] :]]
