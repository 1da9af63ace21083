"""Stage label@<run>: answer each new question with its nearest pool pairs as context."""

import logging

from isara import backends, paths, schema
from isara.config import load_params
from isara.label import label, retrieve
from isara.models import model_ref, set_threads
from isara.stage import run_arg, run_stage

log = logging.getLogger("label")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    it, prev = paths.spec(params.iterations, run)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    proposed = schema.read(paths.data(run) / "proposed.parquet", schema.PROPOSED)
    cache = schema.read(paths.data(run) / "embeddings.parquet", schema.EMBEDDINGS)
    ids = schema.read(paths.data(run) / "index_ids.parquet", schema.INDEX_IDS)
    questions = proposed["question"].to_list()
    index_file, metric = paths.data(run) / "index.ann", params.index.metric
    sets = dict(zip(pool["sample_id"], pool["iteration"], strict=True)) if params.allocation == "stratified" else None
    neighbors, dists = retrieve(questions, cache, params.model.embedder, index_file, ids, metric, params.contexts, sets)
    set_threads(params.model.threads)
    model, tok = backends.load(
        paths.model(prev), params.scale, params.model.device, params.model.trust_remote_code, params.model.threads
    )
    done = schema.read(paths.data(it.extends) / "labeled.parquet", schema.LABELED)
    ref, fmt = model_ref(paths.model(prev)), params.model.chat_format
    out = label(model, tok, proposed, pool, neighbors, dists, params.label, fmt, params.seed, it.k, ref, done)
    schema.write(out, paths.data(run) / "labeled.parquet", schema.LABELED)
    log.info(
        "labelled %d questions with %d neighbours each (%d answers from %s)",
        *(out.height, params.contexts, done.height, it.extends),
    )


if __name__ == "__main__":
    run_stage(main)
