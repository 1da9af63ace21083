"""`isara export` cards: licences inherited from the seed's sources, YAML headers the Hub reads."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from isara import export, schema
from isara.config import load_params
from isara.errors import IsaraError
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml").model_dump(mode="json")


def _header(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_most_restrictive_source_licence_wins() -> None:
    assert export.licence(["truthfulqa"]) == "apache-2.0"
    assert export.licence(["truthfulqa", "beavertails_spard"]) == "cc-by-nc-4.0"
    assert export.licence(["someone_elses"]) == "other"  # unknown provenance: no licence is claimed


def test_dataset_card_explains_every_column_and_the_settings() -> None:
    rows = pl.DataFrame({c: ["x"] for c in ("sample_id", "question", "answer", "model_ref", "neighbor_ids")})
    metrics = {"seed_size": 64, "accepted": 77, "proposed": 80, "data_scaling": 2.2}
    card = export.dataset_card(rows, "it1", False, PARAMS, metrics, ["beavertails_spard"])
    header = _header(card)
    assert header["license"] == "cc-by-nc-4.0" and header["size_categories"] == ["n<1K"]
    assert header["configs"][0]["data_files"][0]["path"] == "data/train.parquet"
    assert "| `neighbor_ids` | sample ids of the pool pairs retrieved" in card
    assert "rouge_threshold: 0.7" in card and "data_scaling: 2.2" in card and "from a seed of 64 pairs" in card
    assert "The teacher, measured" not in card  # a run with no teacher metrics claims none


def test_dataset_card_sets_the_judged_labels_beside_the_seed_and_the_judges_accuracy() -> None:
    r = lambda rate, n: {"rate": rate, "n": n, "ci95": [rate - 0.1, rate + 0.1]}  # noqa: E731
    teacher = {
        "accepted": {"harmful_rate": r(0.28, 75), "refusal_rate": r(0.5333, 75)},
        "seed": {"harmful_rate": r(0.1094, 64), "refusal_rate": r(0.7031, 64)},
        "label_prompts_with_generated_neighbor": r(0.7625, 80),
        "off_domain": {**r(0.2875, 80), "definition": "far from every seed question"},
    }
    judges = {"harm": {"held_out": {"xstest_test": {"n": 449, "accuracy": 0.8976, "f1": 0.6034}}}}
    metrics = {"seed_size": 64, "teacher": teacher, "judges": judges}
    card = export.dataset_card(pl.DataFrame({"question": ["q"]}), "it2", False, PARAMS, metrics, ["truthfulqa"])
    assert "- judged harmful: 28.0% [18%, 38%] of 75 accepted pairs; seed 10.9% [1%, 21%] of 64" in card
    assert "proposals off the seed's domain: 28.7% [19%, 39%] of 80 (far from every seed question)" in card
    assert "harm judge on xstest_test (held out, n=449): accuracy 0.898, F1 0.603" in card
    assert "teacher:" not in card  # the block is prose, not repeated in the growth yaml


def test_model_card_puts_each_rate_beside_its_judges_accuracy() -> None:
    evaluation = {
        "harmful_rate": {"rate": 0.34375, "ci95": [0.2564, 0.4431], "n": 96},
        "judges": {"harm": {"held_out": {"spard_test": {"n": 1004, "accuracy": 0.9044, "f1": 0.9024}}}},
    }
    card = export.model_card("it2", PARAMS, evaluation, 216, ["beavertails_spard"])
    header = _header(card)
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and header["license"] == "apache-2.0"
    assert "harmful rate on harmful prompts: 34.4% [26%, 44%], n=96" in card
    assert "over-refusal on benign prompts: not measured" in card
    assert "harm judge on spard_test (held out, n=1004): accuracy 0.904, F1 0.902" in card
    assert "`cc-by-nc-4.0`" in card and "216 pairs" in card


def test_an_export_never_replaces_a_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}", encoding="utf-8")
    seed = pl.DataFrame(
        {"sample_id": ["a"], "question": ["q"], "answer": ["a"], "origin": ["seed"], "source": ["truthfulqa"]}
    )
    schema.write(seed, tmp_path / PARAMS["data"]["seed_file"], schema.SEED)
    with pytest.raises(IsaraError, match="already exists"):
        export.export_model("it1", tmp_path / "ckpt", tmp_path / "mine", PARAMS, tmp_path)
    assert not any((tmp_path / "mine").iterdir())
    with pytest.raises(IsaraError, match="not a model folder"):
        export.export_model("it1", tmp_path / "nothing", tmp_path / "new", PARAMS, tmp_path)
    assert not (tmp_path / "new").exists()
