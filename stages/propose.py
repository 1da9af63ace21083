"""Stage propose@it<k>: M(k-1) writes new questions from random pool examples."""

import logging

from isara import paths, schema
from isara.cli import iteration_arg, run_stage
from isara.config import load_params
from isara.models import load_model, model_ref, set_threads
from isara.propose import propose

log = logging.getLogger("propose")


def main() -> None:
    k = iteration_arg(__doc__)
    params = load_params()
    prev = paths.prev_of(params, k)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    set_threads(params.model.threads)
    model, tok = load_model(paths.model(prev), params.model.trust_remote_code)
    out = propose(model, tok, pool, params, k, model_ref(paths.model(prev)))
    schema.write(out, paths.data(k) / "proposed.parquet", schema.PROPOSED)
    log.info("read pool it%d (%d pairs); wrote %d questions to %s", prev, pool.height, out.height, paths.data(k))


if __name__ == "__main__":
    run_stage(main)
