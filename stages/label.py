"""Stage label@<run>: answer each new question with its nearest pool pairs as context."""

import logging

from isara import backends, embed, index, paths, schema
from isara.cli import run_arg, run_stage
from isara.config import load_params
from isara.label import label
from isara.models import model_ref, set_threads

log = logging.getLogger("label")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    it, prev = paths.spec(params, run)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    proposed = schema.read(paths.data(run) / "proposed.parquet", schema.PROPOSED)
    cache = schema.read(paths.data(run) / "embeddings.parquet", schema.EMBEDDINGS)
    ids = schema.read(paths.data(run) / "index_ids.parquet", schema.INDEX_IDS)
    vectors = embed.lookup(cache, proposed["question"].to_list(), params.model.embedder)
    neighbors, dists = index.query(
        paths.data(run) / "index.ann", ids, vectors.shape[1], params.index.metric, vectors, params.contexts
    )
    set_threads(params.model.threads)
    model, tok = backends.load(paths.model(prev), params)  # scale.backend: here, vLLM or Ray
    done = schema.read(paths.data(it.extends) / "labeled.parquet", schema.LABELED)
    out = label(model, tok, proposed, pool, neighbors, dists, params, it.k, model_ref(paths.model(prev)), done)
    schema.write(out, paths.data(run) / "labeled.parquet", schema.LABELED)
    log.info(
        "labelled %d questions with %d neighbours each (%d answers from %s)",
        *(out.height, params.contexts, done.height, it.extends),
    )


if __name__ == "__main__":
    run_stage(main)
