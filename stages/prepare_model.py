"""Stage prepare_model: the base model as a safetensors folder (models/it0), embedder located."""

import logging

from isara import paths
from isara.config import load_params
from isara.models import convert_base, embedder_path
from isara.stage import run_stage


def main() -> None:
    params = load_params()
    embedder = embedder_path(params.model.embedder)  # fail early when the embedder is missing
    logging.getLogger("prepare_model").info("embedder %s at %s", params.model.embedder, embedder)
    convert_base(params.model.base, paths.model(paths.BASE), params.model.trust_remote_code)


if __name__ == "__main__":
    run_stage(main)
