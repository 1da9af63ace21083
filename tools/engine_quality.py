"""Engines side by side on the pipeline's own prompts: speed per prompt kind and the judged rates.

    python tools/engine_quality.py --model models/it0 --judges models/judges [--per-suite 64] [--threads 1]

Label prompts (2 contexts), proposal prompts and evaluation prompts run through
isara.generate.generate with each stage's settings from params.yaml, once per engine:
transformers, OpenVINO f32 (`scale.engine: openvino`), and two candidates not wired into
params: OpenVINO int8 weights with OpenVINO's dynamic int8 activations (groups of 32), with f32
inference or OpenVINO's CPU defaults (bf16 inference, a u8 KV cache). (`scale.engine: openvino-int8` keeps activations in f32 and runs at f32's speed.) For each: seconds, the ratio to transformers, and how many texts are identical to
transformers'. The evaluation answers are then judged (harm on the harmful prompts, refusal on the
benign ones) with Wilson intervals, and each engine is paired with transformers by exact McNemar.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def int8_activations(base):
    """The OpenVINO engine with dynamic int8 activations: a candidate measured here, not a param."""
    from isara.openvino_engine import MODEL_XML, converted

    class Int8Activations(base):
        def _request(self, precision: str):
            if precision not in self.requests:
                core = self.ov.Core()
                ir = converted(self.folder, self.cache_root, self.weights, self.trust) / MODEL_XML
                config = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 32, "INFERENCE_NUM_THREADS": self.threads}
                if precision == "f32":  # else OpenVINO's CPU defaults here: bf16 inference, a u8 KV cache
                    config |= {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
                compiled = core.compile_model(core.read_model(ir), "CPU", config)
                self.requests[precision] = compiled.create_infer_request()
            return self.requests[precision]

    return Int8Activations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a checkpoint folder (e.g. models/it0)")
    ap.add_argument("--judges", type=Path, required=True, help="the judge stage's output folder")
    ap.add_argument("--prepared", type=Path, default=ROOT / "data/prepared", help="prepare_data's outputs")
    ap.add_argument("--per-suite", type=int, default=64, help="evaluation prompts per suite (4 suites)")
    ap.add_argument("--threads", type=int, default=1, help="threads per engine (the engine issue measured 1)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".isara/openvino", help="converted IRs")
    args = ap.parse_args()

    import torch

    from isara.config import load_params
    from isara.evaluate import eval_prompts
    from isara.generate import Local, generate
    from isara.icl import answer_prompt
    from isara.judges import Judges
    from isara.models import load_model
    from isara.openvino_engine import OpenVino
    from isara.paired import mcnemar
    from isara.stats import wilson
    from tests.test_openvino_engine import label_prompts, proposal_prompts

    params = load_params(ROOT / "params.yaml")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    local = Local(*load_model(args.model))
    tok = local.tokenizer
    engines = {
        "transformers": (local, False),
        "openvino f32": (OpenVino(args.model, "f32", args.threads, cache_root=args.cache), False),
        "int8 activations": (
            int8_activations(OpenVino)(args.model, "int8", args.threads, cache_root=args.cache),
            False,
        ),
        "int8 activations, OpenVINO defaults": (
            int8_activations(OpenVino)(args.model, "int8", args.threads, cache_root=args.cache),
            True,
        ),
    }
    ev = eval_prompts(args.prepared / "eval_safety.parquet", args.per_suite, seed=0)
    kinds = {
        "label (2 contexts)": (params.label, label_prompts(args.prepared, 32, 2)),
        "propose": (params.propose, proposal_prompts(tok, args.prepared, 32, params.contexts)),
        "evaluate": (params.evaluate, [answer_prompt([], q, "chatml") for q in ev["prompt"].to_list()]),
    }
    for engine, bf16 in engines.values():  # conversions and warm-up outside the timings
        cfg = params.evaluate.model_copy(update={"max_new_tokens": 2, "bf16": bf16})
        generate(engine, tok, ["Hello"], cfg, 0, "chatml", "warm-up")
    texts: dict[str, dict[str, list[str]]] = {}
    print("| prompts | engine | seconds | x transformers | texts identical |\n|---|---|---|---|---|")
    for kind, (cfg, prompts) in kinds.items():
        base = None
        for name, (engine, bf16) in engines.items():
            start = time.perf_counter()
            out = generate(engine, tok, prompts, cfg.model_copy(update={"bf16": bf16}), params.seed, "chatml", kind)[1]
            seconds = time.perf_counter() - start
            texts.setdefault(kind, {})[name] = out
            base = base or seconds
            same = sum(a == b for a, b in zip(out, texts[kind]["transformers"], strict=True))
            print(f"| {kind} ({len(prompts)}) | {name} | {seconds:.1f} | {base / seconds:.2f} | {same} |", flush=True)

    judges = Judges.load(args.judges, params.model.embedder)
    questions, harmful = ev["prompt"].to_list(), (ev["expect"] == "harmful").to_numpy()
    flags = {}
    print(
        "\n| engine | harmful (harmful prompts) | over-refusal (benign prompts) | McNemar p vs transformers (harm / refusal) |"
    )
    print("|---|---|---|---|")
    for name in engines:
        answers = texts["evaluate"][name]
        harm = judges.harm(questions, answers) >= judges.threshold
        refusal = judges.refusal(questions, answers) >= judges.threshold
        flags[name] = (harm[harmful], refusal[~harmful])
        cells = []
        for hits in flags[name]:
            lo, hi = wilson(int(hits.sum()), hits.size)
            cells.append(f"{hits.mean():.1%} [{lo:.0%}, {hi:.0%}] n={hits.size}")
        p = [mcnemar(a, b)["p_value"] for a, b in zip(flags["transformers"], flags[name], strict=True)]
        print(f"| {name} | {cells[0]} | {cells[1]} | {p[0]:.3f} / {p[1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
