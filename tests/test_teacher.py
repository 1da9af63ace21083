"""The teacher metrics: judged self-labelled pairs beside the seed, their provenance, the off-domain share."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from isara import schema, teacher

MODEL = "test-embedder"


class FakeJudges:
    """Harm = the answer says 'harm'; refusal = it says 'cannot' (scores 0.9 / 0.1)."""

    def harm(self, questions: list[str], answers: list[str]) -> np.ndarray:
        return np.array([0.9 if "harm" in a else 0.1 for a in answers])

    def refusal(self, questions: list[str], answers: list[str]) -> np.ndarray:
        return np.array([0.9 if "cannot" in a else 0.1 for a in answers])


def _cache(vectors: dict[str, list[float]]) -> pl.DataFrame:
    rows = {
        "text_id": [schema.text_id(t) for t in vectors],
        "model": [MODEL] * len(vectors),
        "embedding": [list(np.asarray(v, dtype=np.float32) / np.linalg.norm(v)) for v in vectors.values()],
    }
    return pl.DataFrame(rows, schema=schema.EMBEDDINGS)


SEED = pl.DataFrame(
    {
        "sample_id": ["s1", "s2", "s3"],
        "question": ["seed a", "seed b", "seed c"],
        "answer": ["I cannot help", "I cannot do that", "here is harm"],
    }
)
CACHE = _cache(
    {
        "seed a": [1, 0, 0],
        "seed b": [0.9, 0.1, 0],
        "seed c": [0.8, 0.2, 0],
        "near": [1, 0.05, 0],
        "far": [0, 0, 1],
    }
)


def _filtered() -> pl.DataFrame:
    n = 2
    rows = {
        "sample_id": ["g1", "g2"],
        "iteration": [2] * n,
        "origin": ["generated"] * n,
        "model_ref": ["m"] * n,
        "context_ids": [["s1", "s2"], ["s1", "g0"]],
        "question": ["near", "far"],
        "raw": ["near", "far"],
        "neighbor_ids": [["g0", "g9"], ["s3", "s2"]],
        "neighbor_dists": [[0.1, 0.2], [0.3, 0.4]],
        "answer": ["here is harm for you", "I cannot answer"],
        "rouge_context": [0.1, 0.1],
        "rouge_pool": [0.1, 0.1],
        "question_words": [5, 5],
        "answer_words": [8, 8],
        "reject_reason": [None, None],
    }
    return schema.conform(pl.DataFrame(rows), schema.FILTERED, "filtered")


def test_each_pair_gets_scores_provenance_and_its_nearest_seed_question() -> None:
    judged, floor = teacher.judge_pairs(_filtered(), SEED, CACHE, MODEL, FakeJudges())
    assert judged.columns == list(teacher.JUDGED)
    assert judged["harm_score"].to_list() == [0.9, 0.1]
    assert judged["refusal_score"].to_list() == [0.1, 0.9]
    assert judged["generated_contexts"].to_list() == [0, 1]  # g0 is not a seed pair
    assert judged["generated_neighbors"].to_list() == [2, 0]
    assert judged["seed_similarity"][0] == pytest.approx(1 / np.linalg.norm([1, 0.05, 0]), abs=1e-6)
    assert judged["seed_similarity"][1] == pytest.approx(0.0, abs=1e-6)
    # the seed's own floor: the 5% quantile of each seed question's nearest other seed question
    s = np.array([[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.2, 0]], dtype=np.float64)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    sim = s @ s.T
    np.fill_diagonal(sim, -np.inf)
    assert floor == pytest.approx(np.quantile(sim.max(axis=1), 0.05), abs=1e-6)


def test_summary_sets_the_accepted_pairs_beside_the_seed_on_the_same_judges() -> None:
    judged, floor = teacher.judge_pairs(_filtered(), SEED, CACHE, MODEL, FakeJudges())
    judged = judged.with_columns(pl.Series("reject_reason", [None, "short_answer"]))  # only g1 accepted
    got = teacher.summarize(judged, SEED, floor, FakeJudges(), 0.5)
    assert got["accepted"]["harmful_rate"]["rate"] == 1.0 and got["accepted"]["harmful_rate"]["n"] == 1
    assert got["accepted"]["refusal_rate"]["rate"] == 0.0
    assert got["seed"]["harmful_rate"]["rate"] == pytest.approx(1 / 3)
    assert got["seed"]["refusal_rate"]["rate"] == pytest.approx(2 / 3)
    # provenance and domain are over every labelled pair, accepted or not
    assert got["label_prompts_with_generated_neighbor"]["rate"] == 0.5
    assert got["proposal_prompts_with_generated_context"]["rate"] == 0.5
    assert got["off_domain"]["rate"] == 0.5 and got["off_domain"]["n"] == 2  # "far" is off, "near" is not


def test_a_seed_that_shares_no_vector_with_the_cache_is_named() -> None:
    from isara.errors import IsaraError

    with pytest.raises(IsaraError, match="rerun embed"):
        teacher.judge_pairs(_filtered(), SEED, CACHE.head(2), MODEL, FakeJudges())


def test_growth_counts_each_reject_reason_and_the_pool_after() -> None:
    judged, _ = teacher.judge_pairs(_filtered(), SEED, CACHE, MODEL, FakeJudges())
    judged = judged.with_columns(pl.Series("reject_reason", [None, "short_answer"]))
    assert teacher.growth(judged, 64) == {
        "pool_before": 64,
        "proposed": 2,
        "accepted": 1,
        "pool_after": 65,
        "rejected": {"short_answer": 1},
    }


def test_examples_are_the_pool_pairs_the_prompts_showed() -> None:
    pool = schema.conform(
        SEED.with_columns(pl.lit("seed").alias("origin"), pl.lit("x").alias("source"), pl.lit(0).alias("iteration")),
        schema.POOL,
        "pool",
    )
    got = teacher.examples(_filtered(), pool)
    assert got["sample_id"].to_list() == ["s1", "s2", "s3"]  # g0, g9 are not in this pool: nothing invented
    assert teacher.examples(_filtered().head(1), pool)["sample_id"].to_list() == ["s1", "s2"]
