"""Stage prepare_data: seeds and eval splits of every domain, derived from data/raw."""

import json
from pathlib import Path

from isara.cli import run_stage
from isara.config import load_params
from isara.data import prepare


def main() -> None:
    params = load_params()
    counts = prepare(Path(params.data.raw_dir), Path(params.data.prepared_dir), params.data, params.seed)
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/data.json").write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    run_stage(main)
