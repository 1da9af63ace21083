"""isara.rouge against the `rouge_score` package, on real questions."""

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from rouge_score import rouge_scorer
from rouge_score import tokenize as rs_tokenize

from isara.rouge import rouge_l, rouge_l_matrix, rouge_l_max, rouge_l_pairs, tokenize

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"
TOL = 1e-9  # the contract; in practice the scores are bit-identical

EDGE_CASES = [
    "",
    "?!... --- ???",
    "How do I pick a lock?",
    "how do i pick a lock",
    "HOW DO I PICK A LOCK???",
    "İstanbul or Istanbul? 300 K (Kelvin sign) or 300 K?",  # lower() makes ASCII
    "Is a café naïve? Ünïcödé wörds split on every accent.",
    "為什麼天空是藍色的？",  # no [a-z0-9] at all: zero tokens
    "don't won't can't",
    "the the the the the the the the the the",
    "the cat the cat the cat the hat",
    "a " * 70,  # repeated token past one uint64 word
    "a b " * 40,
]


def _beavertails() -> list[str]:
    path = RAW / "beavertails_spard_pairs" / "beavertails_spard_pairs_with_categories.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["prompt"] for line in f]


def _truthfulqa() -> list[str]:
    with open(RAW / "truthfulqa" / "TruthfulQA.csv", newline="") as f:
        return [row["Question"] for row in csv.DictReader(f)]


def _lane_edges(texts: list[str]) -> list[str]:
    """Real text cut to token counts at each lane / word boundary of the kernel."""
    long_tokens = max((tokenize(t) for t in texts), key=len)
    return [" ".join(long_tokens[:n]) for n in (8, 9, 16, 17, 32, 33, 64, 65, 128, 129)]


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str], np.ndarray]:
    """Queries, refs, and rouge_score's ROUGE-L F1 for every pair (~38k pairs).

    Long refs exercise the multi-word kernel; long queries only add steps, and
    rouge_score's quadratic DP makes them slow, so there are few.
    """
    bt, tq = _beavertails(), _truthfulqa()
    longest = sorted(bt, key=lambda t: len(tokenize(t)))[-6:]
    queries = bt[:120] + tq[:40] + longest[-2:] + EDGE_CASES
    refs = tq[40:160] + bt[120:190] + longest + _lane_edges(bt) + EDGE_CASES
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = np.array([[scorer.score(r, q)["rougeL"].fmeasure for r in refs] for q in queries])
    return queries, refs, expected


def test_tokenize_matches_rouge_score_on_every_code_point() -> None:
    # Each code point between separators, so any char lower() maps into
    # [a-z0-9] (e.g. U+0130, U+212A) or any char wrongly kept shows up.
    chars = [chr(cp) for cp in range(0x110000)]
    for start in range(0, len(chars), 1 << 16):
        text = "x".join(chars[start : start + (1 << 16)])
        assert tokenize(text) == rs_tokenize.tokenize(text, None)


def test_tokenize_edge_cases() -> None:
    for text in EDGE_CASES:
        assert tokenize(text) == rs_tokenize.tokenize(text, None)
    assert tokenize("İstanbul, 3 K") == ["i", "stanbul", "3", "k"]
    assert tokenize("café naïve") == ["caf", "na", "ve"]


def test_matrix_matches_rouge_score(corpus: tuple[list[str], list[str], np.ndarray]) -> None:
    queries, refs, expected = corpus
    got = rouge_l_matrix(queries, refs)
    assert got.shape == expected.shape and got.dtype == np.float64
    assert np.abs(got - expected).max() < TOL


def test_max_matches_rouge_score(corpus: tuple[list[str], list[str], np.ndarray]) -> None:
    queries, refs, expected = corpus
    assert np.abs(rouge_l_max(queries, refs) - expected.max(axis=1)).max() < TOL


def test_max_one_query_at_a_time(corpus: tuple[list[str], list[str], np.ndarray]) -> None:
    # One query takes the wide-ref-block path.
    queries, refs, expected = corpus
    for i in range(0, len(queries), 23):
        assert abs(rouge_l_max([queries[i]], refs)[0] - expected[i].max()) < TOL


def test_pairs_match_rouge_score(corpus: tuple[list[str], list[str], np.ndarray]) -> None:
    queries, refs, expected = corpus
    rng = np.random.default_rng(0)
    picks = [rng.choice(len(refs), size=rng.integers(0, 9), replace=False) for _ in queries]
    got = rouge_l_pairs(queries, [[refs[j] for j in p] for p in picks])
    want = [expected[i, p].max(initial=0.0) for i, p in enumerate(picks)]
    assert np.abs(got - want).max() < TOL


def test_single_pair_matches_rouge_score(
    corpus: tuple[list[str], list[str], np.ndarray],
) -> None:
    queries, refs, expected = corpus
    for i in range(0, len(queries), 7):
        for j in range(0, len(refs), 3):
            assert abs(rouge_l(queries[i], refs[j]) - expected[i, j]) < TOL
            assert rouge_l(refs[j], queries[i]) == rouge_l(queries[i], refs[j])


def test_edge_case_values() -> None:
    assert rouge_l("", "") == 0.0
    assert rouge_l("?!...", "What?!") == 0.0
    assert rouge_l("為什麼", "為什麼") == 0.0  # rouge_score sees no tokens at all
    assert rouge_l("How do I pick a lock?", "how do i pick a lock") == 1.0
    assert rouge_l("a " * 70, "a " * 65) == pytest.approx(2 * 65 / 135, abs=TOL)


def test_empty_inputs() -> None:
    qs = ["How do I pick a lock?", ""]
    assert rouge_l_matrix(qs, []).shape == (2, 0)
    assert rouge_l_matrix([], qs).shape == (0, 2)
    assert rouge_l_max(qs, []).tolist() == [0.0, 0.0]
    assert rouge_l_max([], qs).shape == (0,)
    assert rouge_l_max(qs, [""]).tolist() == [0.0, 0.0]
    assert rouge_l_pairs(qs, [[], []]).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        rouge_l_pairs(qs, [[]])
