"""Win rate against the pretrained model: hand-checked counting, known-order pairs, the reward-model slot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isara import schema
from isara.errors import IsaraError
from isara.models import embedder_path
from isara.schema import norm
from isara.winrate import PROXY, Preference, accuracy, compare, known_pairs, outcomes, win_rate

RAW = Path(__file__).resolve().parents[1] / "data/raw"


def test_outcomes_and_win_rate_by_hand() -> None:
    out = outcomes(np.array([0.5, 0.3, 0.40, 0.1]), np.array([0.2, 0.3, 0.405, 0.6]), margin=0.01)
    assert out.tolist() == [1, 0, 0, -1]
    r = win_rate(out)  # (1 win + 2 ties / 2) / 4
    assert r["rate"] == 0.5 and (r["wins"], r["ties"], r["losses"], r["n"]) == (1, 2, 1, 4)
    assert r["ci95"][0] < 0.5 < r["ci95"][1]
    assert win_rate(np.array([1, 1, 1, 1]))["rate"] == 1.0


def test_known_pairs_leave_out_eval_instructions() -> None:
    davinci = json.loads((RAW / "alpaca_eval/alpaca_eval_text_davinci_003.json").read_text("utf-8"))
    excluded = {norm(r["instruction"]) for r in davinci[:400]}
    pairs = known_pairs(RAW, excluded, n=50, seed=0)
    assert pairs.height == 150 and sorted(set(pairs["kind"])) == ["echo", "off_topic", "refusal"]
    assert not {norm(i) for i in pairs["instruction"]} & excluded
    assert (pairs["better"] != pairs["worse"]).all()
    assert pairs.equals(known_pairs(RAW, excluded, n=50, seed=0))  # seeded


@pytest.fixture(scope="module")
def proxy() -> Preference:
    return Preference(PROXY, "all-MiniLM-L6-v2")


@pytest.mark.model
def test_reference_similarity_prefers_on_topic_answers_to_off_topic_ones_and_refusals(proxy) -> None:
    pairs = known_pairs(RAW, set(), n=40, seed=1)
    measured = accuracy(proxy, pairs, margin=0.01)
    assert measured["by_pair"]["off_topic"] >= 0.9 and measured["by_pair"]["refusal"] >= 0.9
    assert measured["n"] == 120


def _prompts(refs: list[str]) -> pl.DataFrame:
    n = len(refs)
    return pl.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"Instruction {i}" for i in range(n)],
            "suite": ["alpaca"] * n,
            "category": ["x"] * n,
            "expect": ["benign"] * n,
            "references": [[r] for r in refs],
            "incorrect": [[] for _ in refs],
        },
        schema=schema.EVAL_PROMPTS,
    )


def _gen(name: str, answers: list[str]) -> pl.DataFrame:
    n = len(answers)
    return pl.DataFrame(
        {
            "model": [name] * n,
            "prompt_id": [f"p{i}" for i in range(n)],
            "suite": ["alpaca"] * n,
            "category": ["x"] * n,
            "expect": ["benign"] * n,
            "prompt": [f"Instruction {i}" for i in range(n)],
            "answer": answers,
            "harm_score": [0.0] * n,
            "refusal_score": [0.0] * n,
            "truth_diff": [None] * n,
        },
        schema=schema.GENERATIONS,
    )


@pytest.mark.model
def test_compare_counts_each_model_against_pretrained(proxy) -> None:
    refs = [
        "Paris is the capital of France, on the Seine.",
        "Boil the egg for nine minutes, then cool it in cold water.",
        "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    ]
    refusal = "I'm sorry, but I can't help with that."
    gens = {
        "pretrained": _gen("pretrained", [refusal] * 3),
        "good": _gen("good", refs),  # answers as the reference says: wins every pair
        "same": _gen("same", [refusal] * 3),  # the pretrained model's answers: ties
    }
    rates, decisions = compare(gens, _prompts(refs), proxy, margin=0.01)
    assert rates["good"]["wins"] == 3 and rates["good"]["rate"] == 1.0
    assert rates["same"]["ties"] == 3 and rates["same"]["rate"] == 0.5
    assert "pretrained" not in rates
    assert decisions.height == 6 and set(decisions["outcome"].to_list()) == {0, 1}
    with pytest.raises(IsaraError, match="no generations of the pretrained"):
        compare({"good": gens["good"]}, _prompts(refs), proxy, margin=0.01)
    # Without references the proxy cannot judge: those prompts are left out, here all of them.
    rates, decisions = compare(gens, _prompts(["", "", ""]), proxy, margin=0.01)
    assert rates == {} and decisions.height == 0


@pytest.mark.model
def test_helpful_prompts_of_any_suite_are_compared(proxy) -> None:
    """A domain of one's own: suite "custom", expect "helpful", references from `isara eval import`."""
    refs = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level."]
    prompts = _prompts(refs).with_columns(pl.lit("custom").alias("suite"), pl.lit("helpful").alias("expect"))
    gens = {
        name: _gen(name, answers).with_columns(pl.lit("custom").alias("suite"), pl.lit("helpful").alias("expect"))
        for name, answers in (("pretrained", ["I cannot help with that."] * 2), ("it1", refs))
    }
    rates, _ = compare(gens, prompts, proxy, margin=0.01)
    assert rates["it1"]["n"] == 2 and rates["it1"]["wins"] == 2
    # A model that answered none of the instruction prompts gets no win rate rather than 0.
    gens["empty"] = gens["it1"].head(0)
    assert "empty" not in compare(gens, prompts, proxy, margin=0.01)[0]


@pytest.mark.model
def test_reward_model_slot(tmp_path: Path) -> None:
    """A local one-logit sequence classifier plugs in (MiniLM with an untrained head: plumbing only)."""
    two = Preference(embedder_path("all-MiniLM-L6-v2"), "all-MiniLM-L6-v2")
    with pytest.raises(IsaraError, match="2 labels"):
        two.scores(["q"], ["a"], [""])
    folder = tmp_path / "reward"
    shutil.copytree(embedder_path("all-MiniLM-L6-v2"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "num_labels": 1, "id2label": {"0": "reward"}}))
    reward = Preference(str(folder), "all-MiniLM-L6-v2")
    s = reward.scores(["How do I bake bread?", "Name a colour."], ["Mix flour, water, yeast.", "Blue."], ["", ""])
    assert s.shape == (2,) and np.isfinite(s).all()
    assert "reward model" in reward.describe()
    with pytest.raises(IsaraError, match="cannot load reward model"):
        Preference(str(tmp_path / "missing"), "all-MiniLM-L6-v2").scores(["q"], ["a"], [""])
