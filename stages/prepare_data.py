"""Stage prepare_data: seeds and eval splits of every domain, derived from data/raw."""

from pathlib import Path

from isara import paths
from isara.config import load_params
from isara.prepare_data import SPLIT_SEED, Sizes, prepare
from isara.stage import run_stage


def main() -> None:
    params = load_params()
    sizes = Sizes(
        category=params.data.category,
        n_seed=params.data.n_seed,
        min_answer_words=params.data.min_answer_words,
        n_xstest_eval=params.data.n_xstest_eval,
        n_alpaca_eval=params.data.n_alpaca_eval,
    )
    counts = prepare(Path(params.data.raw_dir), Path(params.data.prepared_dir), sizes, SPLIT_SEED)
    paths.write_json(Path("metrics/data.json"), counts)


if __name__ == "__main__":
    run_stage(main)
