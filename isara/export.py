"""`isara export`: a run's pairs as a Hugging Face dataset folder, a checkpoint as a model folder, each with a card.

Both folders load offline with the usual tools (`datasets.load_dataset("parquet", ...)`,
`AutoModelForCausalLM.from_pretrained`) and carry a README whose YAML header the Hub reads:
licence, size, base model. The cards are written from the run's own files (params, metrics,
artifacts), never typed by hand.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import yaml

from isara import paths, schema, teacher
from isara.errors import IsaraError
from isara.report import read_json

# The licence of the data each seed source comes from (data/raw/*/SOURCE.md). The model's own
# answers add no restriction: SmolLM2 is Apache-2.0, and any other base model is named in the card.
LICENCES = {
    "beavertails_spard": "cc-by-nc-4.0",  # BeaverTails
    "truthfulqa": "apache-2.0",
    "isara_authors": "cc-by-nc-4.0",  # AlpacaEval instructions
    "alpaca_eval_davinci003": "cc-by-nc-4.0",
}
STRICTNESS = ("apache-2.0", "mit", "cc-by-4.0", "cc-by-nc-4.0", "other")  # least to most restrictive
BASE_MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
COLUMNS = {  # what a reader of the card needs to know about each provenance column
    "sample_id": "content hash of the pair (question and answer)",
    "iteration": "the ISARA iteration that generated the pair (0: the seed D0)",
    "origin": "seed or generated",
    "source": "where a seed pair came from, or the run that generated it",
    "model_ref": "hash of the checkpoint that wrote the question and the answer",
    "context_ids": "sample ids of the pool pairs shown in the proposal prompt",
    "neighbor_ids": "sample ids of the pool pairs retrieved (kNN) as the answer's in-context examples, nearest first",
    "neighbor_dists": "their embedding distances (angular)",
    "rouge_context": "highest ROUGE-L of the question against the proposal prompt's questions",
    "rouge_pool": "highest ROUGE-L of the question against every pool question",
    "question_words": "words in the question",
    "answer_words": "words in the answer",
}


def licence(sources: list[str]) -> str:
    """The most restrictive licence among the seed sources a dataset or model derives from."""
    found = {LICENCES.get(s, "other") for s in sources} or {"other"}
    return max(found, key=STRICTNESS.index)


def _size(n: int) -> str:
    return "n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K"


def _card(header: dict, body: list[str]) -> str:
    return "---\n" + yaml.safe_dump(header, sort_keys=False, width=110) + "---\n\n" + "\n".join(body) + "\n"


def _yaml_block(obj: dict) -> list[str]:
    return ["```yaml", yaml.safe_dump(obj, sort_keys=False, width=110).rstrip(), "```"]


def dataset_card(
    rows: pl.DataFrame, run: str, whole_pool: bool, params: dict, metrics: dict, seed_sources: list[str]
) -> str:
    what = (
        f"the whole pool after `{run}` (the seed D0 and every accepted pair)"
        if whole_pool
        else (f"the pairs generated and accepted in `{run}`")
    )
    header = {
        "license": licence(seed_sources),
        "language": ["en"],
        "size_categories": [_size(rows.height)],
        "task_categories": ["text-generation", "question-answering"],
        "tags": ["synthetic", "isara", "self-alignment"],
        "pretty_name": f"isara {run} {'pool' if whole_pool else 'accepted pairs'}",
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.parquet"}]}],
    }
    body = [
        f"# isara: {header['pretty_name']}",
        "",
        f"{rows.height} question/answer pairs: {what}. isara grew them from a seed of "
        f"{metrics.get('seed_size', '?')} pairs by iterative self-alignment with retrieval-augmented in-context "
        "learning (ISARA, Guo et al. 2024, arXiv:2401.06785): the model proposes questions from example pairs, "
        "answers each with its nearest pool pairs as in-context examples, and the pairs that pass the filter join "
        "the pool.",
        "",
        "## Columns",
        "",
        "| column | meaning |",
        "|---|---|",
        *[f"| `{c}` | {COLUMNS.get(c, 'the text')} |" for c in rows.columns],
        "",
        "## How the pairs were made",
        "",
        f"Model: `{params['model']['base']}`; {params['contexts']} in-context examples per prompt.",
        "",
        *_yaml_block({k: params[k] for k in ("propose", "label", "filter", "index")}),
        "",
        "## Filter and growth",
        "",
        *_yaml_block({k: v for k, v in metrics.items() if k not in ("seed_size", "teacher", "judges")}),
        "",
        *_teacher_lines(metrics.get("teacher", {}), metrics.get("judges", {})),
        "## Licence and attribution",
        "",
        f"`{header['license']}`: the most restrictive licence of the data the seed came from "
        f"({', '.join(sorted(set(seed_sources))) or 'unknown'}; see isara's `data/raw/*/SOURCE.md`). "
        "The texts were written by a language model and are not checked by people; the safety domain's questions "
        "are about harmful requests by design.",
    ]
    return _card(header, body)


def _teacher_lines(teacher: dict, judges: dict) -> list[str]:
    """The judges' view of the run's labels beside the seed's, and the judges' own accuracy."""
    if not teacher:
        return []
    rate = lambda r: f"{r['rate']:.1%} [{r['ci95'][0]:.0%}, {r['ci95'][1]:.0%}] of {r['n']}"  # noqa: E731
    acc, seed = teacher["accepted"], teacher["seed"]
    return [
        "## The teacher, measured",
        "",
        "isara's trained judges on the accepted pairs of this run, beside the same judges on the seed pairs:",
        "",
        f"- judged harmful: {rate(acc['harmful_rate'])} accepted pairs; seed {rate(seed['harmful_rate'])}",
        f"- judged refusing: {rate(acc['refusal_rate'])} accepted pairs; seed {rate(seed['refusal_rate'])}",
        f"- labelling prompts with a generated pair among their neighbours: {rate(teacher['label_prompts_with_generated_neighbor'])}",
        f"- proposals off the seed's domain: {rate(teacher['off_domain'])} ({teacher['off_domain']['definition']})",
        "",
        "The judges' accuracy on held-out labelled data:",
        "",
        *_judge_line(judges),
        "",
    ]


def export_dataset(run: str, out: Path, whole_pool: bool, params: dict, root: Path = Path(".")) -> int:
    """Write out/data/train.parquet and out/README.md; returns the row count."""
    seed = schema.read(root / params["data"]["seed_file"], schema.SEED)
    if whole_pool:
        rows = schema.read(root / paths.data(run) / "pool.parquet", schema.POOL)
    else:
        filtered = schema.read(root / paths.data(run) / "filtered.parquet", schema.FILTERED)
        rows = filtered.filter(pl.col("reject_reason").is_null()).drop("reject_reason", "raw")
    metrics = {"seed_size": seed.height}
    for name in ("filter", "merge"):
        metrics.update(read_json(root / paths.metrics(run) / f"{name}.json"))
    metrics["teacher"] = read_json(root / teacher.METRICS / f"{run}.json")
    metrics["judges"] = read_json(root / "metrics" / "judge.json")
    card = dataset_card(rows, run, whole_pool, params, metrics, seed["source"].unique().sort().to_list())
    _refuse_existing(out)
    with paths.atomic(out) as tmp:
        (tmp / "data").mkdir(parents=True)
        rows.write_parquet(tmp / "data" / "train.parquet", compression="zstd", statistics=False)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return rows.height


def _refuse_existing(out: Path) -> None:
    """An export never replaces a folder: whatever is there may be someone's work."""
    if out.exists():
        raise IsaraError(f"--out {out}: already exists; choose another folder or remove it")


def _judge_line(judges: dict) -> list[str]:
    lines = []
    for which in ("harm", "refusal"):
        for test, m in judges.get(which, {}).get("held_out", {}).items():
            lines.append(
                f"- {which} judge on {test} (held out, n={m['n']}): accuracy {m['accuracy']:.3f}, F1 {m['f1']:.3f}"
            )
    return lines


def model_card(name: str, params: dict, evaluation: dict, train_rows: int | None, seed_sources: list[str]) -> str:
    base = params["model"]["base"]
    header = {
        "license": "apache-2.0" if base == "smollm2" else "other",
        "base_model": BASE_MODELS.get(base, base),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["isara", "self-alignment", "safetensors"],
    }
    rate = lambda key: (  # noqa: E731
        f"{evaluation[key]['rate']:.1%} [{evaluation[key]['ci95'][0]:.0%}, {evaluation[key]['ci95'][1]:.0%}], n={evaluation[key]['n']}"
        if key in evaluation
        else "not measured"
    )
    body = [
        f"# isara `{name}`",
        "",
        f"`{header['base_model']}` aligned by isara (ISARA, Guo et al. 2024, arXiv:2401.06785): iterative "
        "self-alignment with retrieval-augmented in-context learning from a seed of fewer than a hundred "
        f"question/answer pairs. {'Its training set held ' + str(train_rows) + ' pairs.' if train_rows else ''}",
        "",
        "## Recipe",
        "",
        *_yaml_block(
            {
                "gamma": params["gamma"],
                "contexts": params["contexts"],
                "iterations": params["iterations"],
                "train": params["train"],
            }
        ),  # fmt: skip
        "",
        f"Chat format: `{params['model']['chat_format']}`; prompts are conversations of example pairs, no instruction text.",
        "",
        "## Evaluation (isara's own judges)",
        "",
        f"- harmful rate on harmful prompts: {rate('harmful_rate')}",
        f"- over-refusal on benign prompts: {rate('over_refusal')}",
        "",
        "Each rate is only as good as its judge; their accuracy on held-out labelled data:",
        "",
        *_judge_line(evaluation.get("judges", {})),
        "",
        "## Limitations",
        "",
        "- The judges are small classifiers trained by isara, not the paper's Beaver-Dam-7B or GPT-4; read every "
        "rate with their measured accuracy above.",
        "- A lower harmful rate can come with more refusals of benign requests; the over-refusal rate says how many.",
        f"- The training data derive from {', '.join(sorted(set(seed_sources))) or 'the seed'} "
        f"(`{licence(seed_sources)}`): check that licence before any use of the weights beyond research.",
    ]
    return _card(header, body)


def export_model(name: str, model_dir: Path, out: Path, params: dict, root: Path = Path(".")) -> None:
    """Copy a checkpoint folder to `out` with a model card."""
    if not (model_dir / "config.json").is_file():
        raise IsaraError(f"{model_dir}: not a model folder (config.json missing)")
    evaluation = read_json(root / paths.EVAL_METRICS / f"{name}.json")
    train_file = root / paths.data(name) / "train.parquet"
    train_rows = schema.read(train_file, schema.TRAIN).height if train_file.is_file() else None
    sources = schema.read(root / params["data"]["seed_file"], schema.SEED)["source"].unique().sort().to_list()
    card = model_card(name, params, evaluation, train_rows, sources)
    _refuse_existing(out)
    with paths.atomic(out) as tmp:
        shutil.copytree(model_dir, tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
