"""Stage propose@<run>: M(k-1) writes new questions from random pool examples."""

import logging

from isara import backends, paths, schema
from isara.config import load_params
from isara.models import model_ref, set_threads
from isara.propose import propose
from isara.stage import run_arg, run_stage

log = logging.getLogger("propose")


def main() -> None:
    run = run_arg(__doc__)
    params = load_params()
    it, prev = paths.spec(params.iterations, run)
    pool = schema.read(paths.data(prev) / "pool.parquet", schema.POOL)
    set_threads(params.model.threads)
    model, tok = backends.load(
        paths.model(prev), params.scale, params.model.device, params.model.trust_remote_code, params.model.threads
    )
    done = schema.read(paths.data(it.extends) / "proposed.parquet", schema.PROPOSED)
    n, ref, fmt = params.propose.n * it.scale, model_ref(paths.model(prev)), params.model.chat_format
    out = propose(
        model, tok, pool, params.propose, fmt, params.contexts, params.seed, it.k, n, ref, done, params.allocation
    )
    schema.write(out, paths.data(run) / "proposed.parquet", schema.PROPOSED)
    log.info(
        "read pool %s (%d pairs); wrote %d questions to %s (%d of them from %s)",
        *(prev, pool.height, out.height, paths.data(run), done.height, it.extends),
    )


if __name__ == "__main__":
    run_stage(main)
