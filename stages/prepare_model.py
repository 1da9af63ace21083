"""Stage prepare_model: the base model as a safetensors folder (models/it0), embedder located."""

import logging
from pathlib import Path

from isara.cli import run_stage
from isara.config import load_params
from isara.models import convert_base, embedder_path


def main() -> None:
    params = load_params()
    embedder = embedder_path(params.model.embedder)  # fail early when the embedder is missing
    logging.getLogger("prepare_model").info("embedder %s at %s", params.model.embedder, embedder)
    convert_base(params.model.base, Path("models/it0"), params.model.trust_remote_code)


if __name__ == "__main__":
    run_stage(main)
