"""Generation engines and placements chosen by params `scale`: transformers or vLLM, here or on Ray actors.

Every backend runs the batches that isara.generate planned, each with the seed the plan gave it,
so splitting the work over processes or machines leaves the data as it is. vLLM is another
engine: its kernels and sampler give other texts than transformers, with the same settings.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from isara.config import GenerateParams, ScaleParams
from isara.errors import IsaraError
from isara.generate import Engine, Job, Local, stop_ids
from isara.models import load_model, load_tokenizer

log = logging.getLogger(__name__)


def load(folder: Path, scale: ScaleParams, device: str = "cpu", trust_remote_code: bool = False, threads: int = 0):
    """(model, tokenizer) for generate(): the model itself, or an engine that loads its own copies.

    Only the transformers engine placed here loads the weights in this process; vLLM and Ray read
    the folder where they run, and this process keeps the tokenizer (prompt lengths, the batch plan).
    """
    if scale.placement == "ray":
        _require("ray", "ray", "Ray", "scale.placement=ray")
    if scale.engine == "vllm":
        _require("vllm", "vllm", "vLLM", "scale.engine=vllm")
    if scale.placement == "local" and scale.engine == "transformers":
        return load_model(folder, trust_remote_code, device)
    if scale.engine.startswith("openvino"):
        _require("openvino", "openvino", "OpenVINO", f"scale.engine={scale.engine}")
        from isara.openvino_engine import OpenVino

        weights = "int8" if scale.engine == "openvino-int8" else "f32"
        engine = OpenVino(folder, weights, threads, trust_remote_code=trust_remote_code)
        return engine, engine.tokenizer
    tok = load_tokenizer(folder, trust_remote_code)
    if scale.placement == "ray":
        return Ray(folder, scale, trust_remote_code, device), tok
    return Vllm(folder, scale, trust_remote_code), tok


def _require(module: str, extra: str, name: str, setting: str) -> None:
    """One line, before any work, when the chosen engine's or placement's package is missing."""
    if importlib.util.find_spec(module) is None:
        raise IsaraError(f"{setting}: {name} is not installed (pip install 'isara[{extra}]')")


# --- vLLM -------------------------------------------------------------------------------------


def row_seed(batch_seed: int, row: int) -> int:
    """vLLM seeds each request: row j of a planned batch gets its own seed, derived from the batch's."""
    return batch_seed * 1_000_003 + row


def top_k(folder: Path) -> int:
    """The top-k transformers samples with: the checkpoint's generation config, else its default 50."""
    f = Path(folder) / "generation_config.json"
    value = json.loads(f.read_text(encoding="utf-8")).get("top_k") if f.is_file() else None
    return 50 if value is None else int(value)


def check_vllm(cfg: GenerateParams) -> None:
    """What vLLM's sampler cannot do, refused on one line before any engine starts."""
    if cfg.num_beams > 1:
        raise IsaraError(
            f"scale.engine=vllm: num_beams={cfg.num_beams} needs beam search, which vLLM's sampler does not do;"
            " set num_beams: 1 or use the transformers engine"
        )
    if cfg.no_repeat_ngram_size:
        raise IsaraError(
            f"scale.engine=vllm: no_repeat_ngram_size={cfg.no_repeat_ngram_size} has no vLLM equivalent;"
            " set it to 0 or use the transformers engine"
        )
    if cfg.length_penalty != 1.0:
        raise IsaraError(
            f"scale.engine=vllm: length_penalty={cfg.length_penalty} acts in beam search, which vLLM's sampler"
            " does not do; set it to 1.0 or use the transformers engine"
        )
    if cfg.exponential_decay_length_penalty is not None:
        raise IsaraError(
            f"scale.engine=vllm: exponential_decay_length_penalty={list(cfg.exponential_decay_length_penalty)} has"
            " no vLLM equivalent; set it to null or use the transformers engine"
        )


def sampling_kwargs(cfg: GenerateParams, stop: list[int], sample_top_k: int, seed: int) -> dict:
    """vllm.SamplingParams arguments for a generate config (one request, one seed)."""
    check_vllm(cfg)
    kw = dict(
        n=1,
        max_tokens=cfg.max_new_tokens,
        repetition_penalty=cfg.repetition_penalty,  # like transformers: over prompt and output tokens
        stop_token_ids=stop,
        seed=seed,
        skip_special_tokens=False,  # the turn-end token stays in the raw text, as transformers decodes it
    )
    if cfg.do_sample:
        kw.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=sample_top_k)
    else:
        kw.update(temperature=0.0)  # vLLM's greedy decoding
    return kw


class Vllm(Engine):
    """vLLM on this machine's GPU: all pending batches in one call; vLLM schedules its own batches."""

    key = "+vllm"

    def __init__(self, folder: Path, scale: ScaleParams, trust_remote_code: bool = False) -> None:
        self.folder, self.scale, self.trust = Path(folder).resolve(), scale, trust_remote_code
        self.llm, self.dtype = None, None

    def _engine(self, cfg: GenerateParams):
        from vllm import LLM

        dtype = "bfloat16" if cfg.bf16 else "auto"  # auto: vLLM picks, 16-bit for fp32 weights
        if self.llm is None or self.dtype != dtype:
            self.llm, self.dtype = None, dtype
            self.llm = LLM(
                model=str(self.folder),
                tokenizer=str(self.folder),
                trust_remote_code=self.trust,
                dtype=dtype,
                seed=0,  # requests carry their own seeds; this only fixes vLLM's unseeded state
                gpu_memory_utilization=self.scale.gpu_memory_utilization,
            )
        return self.llm

    def run(self, jobs: list[Job], cfg: GenerateParams, fmt: str) -> Iterator[tuple[int, list[str]]]:
        if not jobs:
            return
        check_vllm(cfg)
        from vllm import SamplingParams, TokensPrompt

        llm = self._engine(cfg)
        tok = llm.get_tokenizer()
        stop, tk = stop_ids(tok, fmt), top_k(self.folder)
        sampling = [
            SamplingParams(**sampling_kwargs(cfg, stop, tk, row_seed(j.seed, r)))
            for j in jobs
            for r in range(len(j.rows))
        ]
        prompts = [TokensPrompt(prompt_token_ids=ids) for j in jobs for ids in j.rows]
        outs = iter(llm.generate(prompts, sampling, use_tqdm=False))  # in the order given
        for j in jobs:
            yield j.b, [tok.decode(list(next(outs).outputs[0].token_ids), skip_special_tokens=False) for _ in j.rows]


# --- Ray --------------------------------------------------------------------------------------


class Replica:
    """One model copy in a Ray actor: runs planned batches with the same code as this process."""

    def __init__(
        self, folder: str, scale: ScaleParams, cfg: GenerateParams, fmt: str, threads: int, trust: bool, device: str
    ):
        for noisy in ("transformers", "vllm"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.cfg, self.fmt = cfg, fmt
        if scale.engine == "vllm":
            self.engine: Engine = Vllm(Path(folder), scale, trust)
        else:
            import torch

            torch.set_num_threads(threads)  # actors x threads <= cores: none waits on another's thread
            # Ray gives a GPU actor its own card as cuda:0 (CUDA_VISIBLE_DEVICES)
            self.engine = Local(*load_model(folder, trust, "cuda" if device.startswith("cuda") else "cpu"))

    def __call__(self, batch: dict) -> dict:
        jobs = [Job(int(b), *json.loads(j)) for b, j in zip(batch["b"], batch["job"], strict=True)]
        done = dict(self.engine.run(jobs, self.cfg, self.fmt))
        return {"b": [j.b for j in jobs], "texts": [json.dumps(done[j.b]) for j in jobs]}


class Ray(Engine):
    """Ray Data map_batches over an actor pool, one planned batch per call, each actor one replica."""

    def __init__(self, folder: Path, scale: ScaleParams, trust_remote_code: bool = False, device: str = "cpu") -> None:
        # Actors run elsewhere: an absolute path, which on a cluster must be shared storage.
        self.folder, self.scale, self.trust = str(Path(folder).resolve()), scale, trust_remote_code
        self.device = device  # model.device: a transformers actor on cuda asks Ray for a GPU
        self.key = "+vllm" if scale.engine == "vllm" else ""  # Ray itself changes no text

    def run(self, jobs: list[Job], cfg: GenerateParams, fmt: str) -> Iterator[tuple[int, list[str]]]:
        if not jobs:
            return
        if self.scale.engine == "vllm":
            check_vllm(cfg)  # before Ray starts
        import ray.data

        started = connect(self.scale)
        try:
            vllm = self.scale.engine == "vllm"
            gpu = vllm or self.device.startswith("cuda")
            threads = 1 if vllm else self.scale.ray_threads or max(1, cpus() // self.scale.ray_actors)
            # Longest batches first, so no actor is left with a long one at the end; order is not data.
            jobs = sorted(jobs, key=lambda j: -sum(map(len, j.rows)))
            items = [{"b": j.b, "job": json.dumps([j.rows, j.seed])} for j in jobs]
            out = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                Replica,
                fn_constructor_kwargs=dict(
                    folder=self.folder,
                    scale=self.scale,
                    cfg=cfg,
                    fmt=fmt,
                    threads=threads,
                    trust=self.trust,
                    device=self.device,
                ),
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=min(self.scale.ray_actors, len(jobs))),
                num_cpus=threads,
                num_gpus=1 if gpu else 0,
            )
            for row in out.iter_rows():  # as actors finish, in no fixed order: generate() sorts by index
                yield int(row["b"]), json.loads(row["texts"])
        finally:
            if started:
                ray.shutdown()


def cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def connect(scale: ScaleParams) -> bool:
    """Join scale.ray_address or RAY_ADDRESS, else start a local instance; True: ours to shut down."""
    import ray.data

    if ray.is_initialized():
        return False
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray would otherwise report usage over the network
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    address = scale.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        import isara

        log.info("joining the Ray cluster at %s", address)
        # The workers import the driver's own isara, whatever version their nodes have installed.
        ray.init(address=address, runtime_env={"py_modules": [str(Path(isara.__file__).parent)]}, **quiet)
    else:
        # A fresh instance of our own, never one left running on this machine by someone else.
        ray.init(address="local", num_cpus=os.cpu_count(), **quiet)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # generate() shows one bar over all batches
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return True
