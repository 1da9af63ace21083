"""Stage embed@<run>: embed the new questions; cached texts are not embedded again."""

import logging

from isara import embed, paths, schema
from isara.config import load_params
from isara.stage import run_arg, run_stage

log = logging.getLogger("embed")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    _, prev = paths.spec(params.iterations, run)
    cache = schema.read(paths.data(prev) / "embeddings.parquet", schema.EMBEDDINGS)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    proposed = schema.read(paths.data(run) / "proposed.parquet", schema.PROPOSED)
    texts = pool["question"].to_list() + proposed["question"].to_list()
    cache, n_new = embed.embed_new(cache, texts, params.model.embedder)
    schema.write(cache, paths.data(run) / "embeddings.parquet", schema.EMBEDDINGS)
    log.info("embedded %d new questions; cache now %d rows", n_new, cache.height)


if __name__ == "__main__":
    run_stage(main)
