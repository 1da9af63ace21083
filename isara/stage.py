"""What every stage shares: logging, the one-line error contract, and the run it works on."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from collections.abc import Callable

from isara.errors import IsaraError


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("httpx", "urllib3", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage; a user-facing problem ends it with one line and exit status 1."""
    setup_logging()
    start = time.perf_counter()
    try:
        main()
        # Which stage is the largest is what a user sizing a machine asks: every stage says it.
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
        logging.getLogger("isara").info("done in %.0f s, peak RSS %.2f GB", time.perf_counter() - start, peak_gb)
    except IsaraError as err:
        if "--debug" in sys.argv:
            raise
        print(f"isara: error: {err}", file=sys.stderr)
        sys.exit(1)


def run_arg(description: str) -> str:
    """The run a stage works on: an iteration (it1, it2, ...) or the one-shot baseline."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--run", required=True, help="a key of params.yaml: iterations, e.g. it1")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap.parse_args().run
