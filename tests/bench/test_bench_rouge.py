"""Speed of isara.rouge.rouge_l_max against rouge_score, 2,000 x 2,000 real questions.

Run alone (not part of the normal test run):
    python -m pytest tests/bench/test_bench_rouge.py --benchmark-only
"""

import csv
import gzip
import json
import time
from pathlib import Path

import numpy as np
from pytest_benchmark.fixture import BenchmarkFixture
from rouge_score import rouge_scorer

from isara.rouge import rouge_l_max

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"
N = 2000
BASELINE_QUERIES = 50  # rouge_score does ~20k pairs/s: 50 x 2,000 takes ~5 s
MIN_RATIO = 500


def _questions() -> list[str]:
    """TruthfulQA and BeaverTails questions, de-duplicated, in file order."""
    path = RAW / "beavertails_spard_pairs" / "beavertails_spard_pairs_with_categories.jsonl.gz"
    with gzip.open(path, "rt") as f:
        beavertails = [json.loads(line)["prompt"] for line in f]
    with open(RAW / "truthfulqa" / "TruthfulQA.csv", newline="") as f:
        truthfulqa = [row["Question"] for row in csv.DictReader(f)]
    texts = list(dict.fromkeys(truthfulqa + beavertails))
    if len(texts) < 2 * N:  # pad with more BeaverTails prompts only if needed
        path = RAW / "beavertails_30k_test_prompts" / "beavertails_30k_test_prompts.jsonl"
        with open(path) as f:
            texts = list(dict.fromkeys(texts + [json.loads(line)["prompt"] for line in f]))
    return texts[: 2 * N]


def test_rouge_l_max_speed_ratio(benchmark: BenchmarkFixture) -> None:
    texts = _questions()
    # Interleave so both sides mix TruthfulQA and BeaverTails.
    queries, refs = texts[0::2], texts[1::2]
    assert len(queries) == len(refs) == N

    # Baseline: rouge_score pairwise on an evenly spread subsample of queries.
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    sample = queries[:: N // BASELINE_QUERIES]
    start = time.perf_counter()
    baseline_max = [max(scorer.score(r, q)["rougeL"].fmeasure for r in refs) for q in sample]
    baseline_per_pair = (time.perf_counter() - start) / (len(sample) * N)

    result = benchmark.pedantic(rouge_l_max, args=(queries, refs), rounds=5, warmup_rounds=1)
    fast_per_pair = benchmark.stats.stats.median / (N * N)
    ratio = baseline_per_pair / fast_per_pair

    benchmark.extra_info.update(
        pairs=N * N,
        baseline_pairs=len(sample) * N,
        baseline_us_per_pair=baseline_per_pair * 1e6,
        fast_ns_per_pair=fast_per_pair * 1e9,
        speed_ratio=ratio,
        input=f"{N} x {N} real questions",
        baseline=f"rouge_score scorer, {baseline_per_pair * 1e6:.1f} us/pair",
        fast=f"isara.rouge.rouge_l_max, {fast_per_pair * 1e9:.1f} ns/pair",
        floor=f"{MIN_RATIO}x",
    )
    assert np.abs(result[:: N // BASELINE_QUERIES] - baseline_max).max() < 1e-9
    assert ratio >= MIN_RATIO, f"only {ratio:.0f}x faster than rouge_score"
