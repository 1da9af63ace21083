"""Typed parameters: one pydantic model for params.yaml, validated once at start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from isara.errors import IsaraError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Iteration(Section):
    k: int = Field(ge=1)  # position in the loop: sets the seed and the learning-rate halving
    prev: int = Field(ge=0)  # the iteration whose model and pool this one starts from (0 = base model, seed)
    scale: int = Field(1, ge=1)  # proposals = propose.n x scale; the one-shot baseline proposes K x n at once
    # A run with the same k and prev whose proposals and labels are this run's first rows: the same
    # model, pool and seed draw them, so they are read instead of generated again. it0 = none.
    extends: str = Field(pattern=r"^[a-z][a-z0-9_]*$")


class DataParams(Section):
    raw_dir: str = "data/raw"
    prepared_dir: str = "data/prepared"  # where prepare_data writes; a domain folder points at the root's
    seed_file: str = "data/prepared/seed_safety.parquet"  # which seed the loop starts from
    eval_file: str = "data/prepared/eval_safety.parquet"  # prompts the evaluate stage answers
    category: str = "discrimination,stereotype,injustice"  # the paper's first safety domain
    n_seed: int = Field(64, ge=1, le=100_000)  # paper: 64 seeds per domain
    min_answer_words: int = Field(8, ge=1)  # seed answers shorter than this after trimming are skipped
    n_xstest_eval: int = Field(150, ge=0, le=250)  # XSTest safe prompts kept for over-refusal; the rest train judges
    n_alpaca_eval: int = Field(200, ge=0, le=805)
    max_seed_rows: int = Field(10_000, ge=1)  # a larger imported seed is refused


class ModelParams(Section):
    base: str = "smollm2"  # "smollm2" (packaged GGUF), a local HF folder, or a hub id
    embedder: str = "all-MiniLM-L6-v2"  # "all-MiniLM-L6-v2" (packaged) or a local folder / hub id
    chat_format: Literal["chatml", "plain"] = "chatml"  # plain Q/A turns for base models without a template
    trust_remote_code: bool = False
    threads: int = Field(0, ge=0)  # 0 = all cores
    # Where generation and training run: cpu, or cuda / cuda:N on a GPU machine. A stage param: a GPU's
    # kernels give other floats than the CPU's, so the artifacts are those of the device named here.
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")


class GenerateParams(Section):
    """How a model continues prompts; each generation step has its own section and defaults."""

    max_new_tokens: int = Field(40, ge=1, le=4096)
    batch_size: int = Field(32, ge=1)  # most rows per batch; batches are cut shorter where padding costs more
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_beams: int = Field(1, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram_size: int = Field(0, ge=0)
    bf16: bool = True  # bf16 weights where the hardware has bf16 (isara.models.use_bf16), fp32 elsewhere
    max_prompt_tokens: int = Field(1536, ge=16)  # longer prompts drop their farthest examples first
    # Beam scores are divided by length**length_penalty: > 1 favours longer beams (authors' proposals: 2).
    length_penalty: float = 1.0
    # (start, factor): n tokens past `start` new ones, the end-of-turn score rises by |score| x (factor**n - 1),
    # so a text ends near `start` rather than at max_new_tokens (authors: (15, 1.6) propose, (30, 1.05) label).
    exponential_decay_length_penalty: tuple[Annotated[int, Field(ge=0)], Annotated[float, Field(gt=0)]] | None = None

    @model_validator(mode="after")
    def _beam_only(self) -> GenerateParams:
        # transformers only warns and ignores it: a setting that silently does nothing is refused here
        if self.length_penalty != 1.0 and self.num_beams == 1:
            raise ValueError(
                f"length_penalty={self.length_penalty} acts only in beam search; set num_beams > 1 or length_penalty: 1.0"
            )
        return self


class ProposeParams(GenerateParams):
    n: int = Field(80, ge=1)  # new questions per iteration (paper: 512)
    do_sample: bool = True  # sampling on for diverse questions
    temperature: float = Field(0.9, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)


class LabelParams(GenerateParams):
    max_new_tokens: int = Field(64, ge=1, le=4096)  # paper: 100; 64 keeps two iterations in the CPU budget
    repetition_penalty: float = Field(1.2, gt=0)  # as the authors
    no_repeat_ngram_size: int = Field(10, ge=0)  # as the authors


class IndexParams(Section):
    metric: Literal["angular", "euclidean", "dot"] = "angular"
    n_trees: int = Field(16, ge=1)


class FilterParams(Section):
    rouge_threshold: float = Field(0.7, ge=0, le=1)  # authors' novelty threshold
    min_words: int = Field(5, ge=0)  # authors' minimum question/answer length


class TrainParams(Section):
    method: Literal["full", "lora"] = "full"
    lr: float = Field(2e-5, gt=0)  # DESIGN §5: 2e-5 x 2 epochs visibly aligns the 135M model
    lr_decay: float = Field(0.5, gt=0, le=1)  # the authors halve the lr every iteration
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1)
    # One optimizer step every grad_accum batches, the update of one batch of grad_accum x batch_size
    # rows (authors: 4 x 8); the last step of a round takes what is left.
    grad_accum: int = Field(1, ge=1)
    # Learning rate over a round's optimizer steps: constant, or cosine decay to 0 (authors); either
    # after warmup_steps of linear warm-up from 0, as transformers' schedules.
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    # AdamW's moment decays: torch's default; the authors' safe-rlhf trainer uses (0.9, 0.95)
    adam_betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    max_length: int = Field(256, ge=16)  # the longest seed example is ~130 tokens
    # ~1.6x faster on a CPU with AVX512-BF16, per-step loss within 0.04 of fp32; a CPU without bf16
    # instructions (AVX2 only) trains in fp32 instead (isara.models.use_bf16), as emulated bf16 crawls
    bf16: bool = True
    weight_decay: float = Field(0.0, ge=0)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    # Every this many steps the weights, optimizer state and loss log are saved under .isara/scratch;
    # a killed train stage resumes from the last one (0 = never). Each save writes ~3x the model size.
    checkpoint_every: int = Field(50, ge=0)
    # Processes training together, each on its slice of every batch (DDP through accelerate); more
    # than 1 reruns the stage under `accelerate launch`. Float sums then add up in another order.
    processes: int = Field(1, ge=1)
    accelerate_config: str | None = None  # accelerate config file: FSDP, DeepSpeed, machines; null = DDP here


class EvaluateParams(GenerateParams):
    batch_size: int = Field(64, ge=1)  # short prompts: decoding dominates, and wider batches decode cheaper
    max_per_suite: int = Field(48, ge=1)  # prompts sampled from each eval suite


class JudgeParams(Section):
    # "cross_encoder" or "mlp" (trained by the judge stage, isara/judges.py), or an HF
    # sequence-classification model (a hub id or a local folder) that is only measured.
    harm: str = "cross_encoder"
    refusal: str = "mlp"
    max_train_per_source: int = Field(1500, ge=10)
    max_test_per_source: int | None = Field(
        None, ge=10
    )  # held-out questions per source; None = all (smoke runs cap it)
    threshold: float = Field(0.7, gt=0, lt=1)  # chosen out of fold: docs/judge_cv.md
    # Win rate against the pretrained model: "reference_similarity" (an offline proxy, see
    # isara/winrate.py) or an HF reward model (sequence classification, one logit).
    preference: str = "reference_similarity"
    tie_margin: float = Field(0.01, ge=0)  # score differences within it are ties

    @field_validator("harm", "refusal")
    @classmethod
    def _not_the_old_name(cls, v: str) -> str:
        if v == "trained":
            raise ValueError("'trained' names no architecture: use 'cross_encoder' or 'mlp'")
        return v

    # Harm-judge training sources (SPARD test and XSTest judge_test are scored whatever this says).
    # hh_rlhf is off by default: its `chosen` answers are only preferred, not harmless, and
    # labelled 0 they cost ~4 points of SPARD-test F1 (0.856 vs 0.904, measured) for no XSTest gain.
    sources: tuple[Literal["spard", "xstest", "alpaca", "hh_rlhf"], ...] = Field(
        ("spard", "xstest", "alpaca"), min_length=1
    )


class ScaleParams(Section):
    """Which engine generates, and where. Only the engine changes the data (a param of the generation
    stages); placement and resources do not (the Ray actor test writes the same bytes as one process)."""

    # vllm: another engine's numerics and sampler (a GPU). openvino: OpenVINO's forward pass with
    # transformers' decoding on a CPU, the same texts as transformers at f32 (docs/cpu-engines.md);
    # openvino-int8: int8 weights, other texts. Neither openvino path is faster here at the default
    # settings (BENCHMARKS.md), so transformers stays the default.
    engine: Literal["transformers", "vllm", "openvino", "openvino-int8"] = "transformers"
    placement: Literal["local", "ray"] = "local"  # ray: planned batches spread over an actor pool
    ray_address: str | None = None  # a cluster to join; None: RAY_ADDRESS, else a local instance
    ray_actors: int = Field(2, ge=1)  # model replicas; each holds a whole copy of the weights
    ray_threads: int = Field(0, ge=0)  # torch threads (Ray CPUs) per transformers actor; 0 = CPUs / actors
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)  # vLLM's share of a GPU (weights + KV cache)

    @model_validator(mode="after")
    def _placement_keeps_bytes(self) -> ScaleParams:
        # vLLM batches the requests it is handed as it sees fit, so actors handed a batch each would
        # write other texts than one engine handed them all: the placement would change the data.
        if self.engine.startswith("openvino") and self.placement == "ray":
            raise ValueError(f"placement=ray with engine={self.engine}: the openvino engine runs locally only")
        if self.engine == "vllm" and self.placement == "ray":
            raise ValueError(
                "placement=ray with engine=vllm: vLLM's texts depend on what it batches together; "
                "use placement: local (one vLLM engine schedules the whole GPU)"
            )
        return self


class Params(Section):
    seed: int = 0
    gamma: float = Field(1.0, ge=0)  # weight of generated samples vs seed (paper: 1)
    contexts: int = Field(2, ge=1, le=64)  # in-context examples per prompt (paper: 8)
    # How a prompt's examples are drawn from the pool: union = from all of it alike; stratified = one
    # from each generated set and the rest from the seed, as the authors' generate.py (isara/icl.py: quotas)
    allocation: Literal["union", "stratified"] = "union"
    iterations: dict[str, Iteration]
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    propose: ProposeParams
    label: LabelParams
    index: IndexParams = IndexParams()
    filter: FilterParams = FilterParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams
    judge: JudgeParams = JudgeParams()
    scale: ScaleParams = ScaleParams()

    @model_validator(mode="after")
    def _check_iterations(self) -> Params:
        loop = {name for name in self.iterations if re.fullmatch(r"it\d+", name)}
        for name, it in self.iterations.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"iterations.{name}: names are lower-case letters, digits and _")
            if name in loop and name != f"it{it.k}":
                raise ValueError(f"iterations.{name}: name must be it{it.k} to match k={it.k}")
            if it.prev != 0 and f"it{it.prev}" not in loop:
                raise ValueError(f"iterations.{name}: prev={it.prev} is not an iteration")
            if it.prev >= it.k:
                raise ValueError(f"iterations.{name}: prev={it.prev} must be smaller than k={it.k}")
            base = self.iterations.get(it.extends)
            if it.extends != "it0" and (base is None or base.extends == name):
                raise ValueError(f"iterations.{name}: extends={it.extends} is not another run (it0 = none)")
            if base is not None and (base.k, base.prev) != (it.k, it.prev):
                raise ValueError(f"iterations.{name}: extends={it.extends}, which has another k or prev")
            if base is not None and base.scale >= it.scale:
                raise ValueError(f"iterations.{name}: extends={it.extends}, which proposes as many or more")
        return self


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    if first["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    msg = first["msg"].removeprefix("Value error, ")  # our own validators name the key already
    return f"{loc}: {msg}{shown}" if loc else msg


def parse_params(raw: dict, source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise IsaraError(f"{source}: {_format_error(err)}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    return parse_params(_read_yaml(Path(path)), str(path))


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """A key given twice is an error: PyYAML would silently keep only the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.value in seen:
                why = f"duplicate key '{key_node.value}' at line {key_node.start_mark.line + 1}"
                raise yaml.constructor.ConstructorError(problem=why)
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise IsaraError(f"{path}: params file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        why = getattr(err, "problem", None) or type(err).__name__
        raise IsaraError(f"{path}: not valid YAML ({why})") from None
    if not isinstance(raw, dict):
        raise IsaraError(f"{path}: expected a mapping of params at the top level")
    return raw


def apply_profile(base: str | Path, overlay: str | Path) -> str:
    """A complete params file: base params with a profile's keys laid over them, every key explicit."""
    merged = _deep_merge(_read_yaml(Path(base)), _read_yaml(Path(overlay)))
    if "iterations" in _read_yaml(Path(overlay)):
        merged["iterations"] = _read_yaml(Path(overlay))["iterations"]  # a profile's iterations replace, not add
    params = parse_params(merged, str(overlay))
    header = f"# Generated by `isara profile {overlay}` from {base}; every key explicit.\n"
    return header + yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, width=110)
