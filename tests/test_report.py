"""The report's parts: paired comparisons under both judges, and the page's inline data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from isara import html, schema
from isara.report import comparisons

REFUSE, COMPLY = "I cannot help with that.", "Sure, here is how you do it step by step."


def _gen(model: str, harm: list[float], answers: list[str]) -> pl.DataFrame:
    n = len(harm)
    rows = {
        "model": [model] * n,
        "prompt_id": [f"p{i:03d}" for i in range(n)],
        "suite": ["category"] * n,
        "category": ["c"] * n,
        "expect": ["harmful"] * n,
        "prompt": ["q"] * n,
        "answer": answers,
        "harm_score": harm,
        "refusal_score": [0.0] * n,
        "truth_diff": [0.0] * n,
    }
    return schema.conform(pl.DataFrame(rows), schema.GENERATIONS, model)


def test_the_last_iteration_is_paired_with_each_baseline_and_a_judge_flip_is_flagged(tmp_path: Path) -> None:
    # The trained judge calls it2 less harmful than sft on 30 prompts; the keyword judge sees it2 comply
    # where sft refuses on those same prompts, so under keywords it2 is the more harmful one.
    n = 40
    it2 = _gen("it2", [0.0] * 30 + [1.0] * 10, [COMPLY] * 30 + [REFUSE] * 10)
    sft = _gen("sft", [1.0] * 30 + [1.0] * 10, [REFUSE] * 30 + [REFUSE] * 10)
    it1 = _gen("it1", [1.0] * n, [COMPLY] * n)
    for name, g in (("it2", it2), ("sft", sft), ("it1", it1)):
        schema.write(g, tmp_path / f"{name}.parquet", schema.GENERATIONS)
    got = comparisons(tmp_path, 0.5)
    assert got["x"] == "it2"  # the highest iteration, not it1
    assert list(got["pairs"]) == ["sft"]  # only baselines that were evaluated
    pair = got["pairs"]["sft"]
    trained, keyword = pair["trained"]["harmful_category"], pair["keyword"]["harmful_category"]
    assert trained["difference"] == -0.75 and trained["verdict"] == "better"
    assert keyword["difference"] == 0.75 and keyword["verdict"] == "worse"
    assert pair["flips"] == ["harmful_category"]


def test_the_power_table_states_each_rates_prompts_and_half_width(tmp_path: Path) -> None:
    from isara.report import power_lines, tables

    for name in ("it2", "sft"):
        schema.write(_gen(name, [0.0] * 100, [COMPLY] * 100), tmp_path / f"{name}.parquet", schema.GENERATIONS)
    comp = comparisons(tmp_path, 0.5)
    # 100 prompts: 1.96 * sqrt(0.25 / 100) = 9.8 points; 6 points need ceil(1.96^2 * 0.25 / 0.06^2) = 267.
    assert power_lines(comp) == [["harmful_category", "100", "±9.8%", "267"]]
    assert "Power of this run" in [t[0] for t in tables([], comp, {})]


def test_no_iteration_evaluated_means_no_comparison(tmp_path: Path) -> None:
    schema.write(_gen("sft", [1.0], [REFUSE]), tmp_path / "sft.parquet", schema.GENERATIONS)
    assert comparisons(tmp_path, 0.5) == {}


def test_inline_data_cannot_close_its_script_element_and_reads_back_the_same() -> None:
    rows = {"rows": [{"question": "</script><script>alert(1)</script> & <b>"}], "pool": {}}
    text = html._json_for_script(rows)
    assert "</" not in text and "<" not in text and "&" not in text
    assert json.loads(text) == rows


def test_the_page_names_no_outside_address() -> None:
    doc = html.page("t", [("Models", html.table(["a"], [["<x>"]]))], {"rows": [], "pool": {}, "threshold": 0.5})
    assert "&lt;x&gt;" in doc  # cells are text, not markup
    assert not re.search(r"(src|href)=\"(https?:)?//", doc)
    assert "default-src 'none'" in doc  # the browser itself refuses any request the page might make


@pytest.mark.slow
def test_the_pair_browser_stays_usable_at_the_paper_profiles_size(tmp_path: Path) -> None:
    """5,000 pairs (the paper profile makes ~1,500 per iteration): the page draws one page of rows, and
    filter and search narrow all of them to exactly the rows that match."""
    from tests.browser import open_page

    pool = {f"s{i}": {"q": f"seed question {i}", "a": f"seed answer {i}", "o": "seed"} for i in range(64)}
    rows = [
        {
            "run": f"it{1 + i % 3}",
            "id": f"g{i}",
            "writer": f"models/it{i % 3}",
            "model_ref": "ref",
            "question": f"question {i} about {'cats' if i % 7 == 0 else 'dogs'}",
            "raw": "",
            "answer": f"answer {i}",
            "contexts": [f"s{i % 64}", f"s{(i + 1) % 64}"],
            "neighbors": [f"s{(i + 2) % 64}"] + ([f"g{i - 1}"] if i else []),
            "dists": [0.5, 0.7] if i else [0.5],
            "generated_neighbors": 1 if i else 0,
            "rouge_context": 0.1,
            "rouge_pool": 0.2,
            "q_words": 5,
            "a_words": 2,
            "reason": None if i % 5 else "short_answer",
            "harm": (i % 10) / 10,
            "refusal": 0.0,
            "seed_sim": 0.5,
        }
        for i in range(5000)
    ]
    doc = html.page("big", [], {"rows": rows, "pool": pool, "threshold": 0.5, "page_rows": html.PAGE_ROWS})
    (tmp_path / "index.html").write_text(doc, encoding="utf-8")
    with open_page(tmp_path / "index.html") as opened:
        page = opened.page
        assert opened.console_errors == []
        assert page.text_content("#total") == "5000" and page.text_content("#count") == "5000"
        assert page.locator("#pairs tbody tr.pair").count() == html.PAGE_ROWS  # one page drawn, not 5,000 rows
        page.fill("#f-text", "cats")
        assert page.text_content("#count") == str(sum(1 for i in range(5000) if i % 7 == 0))
        page.select_option("#f-status", "rejected")
        assert page.text_content("#count") == str(sum(1 for i in range(5000) if i % 7 == 0 and i % 5 == 0))
        page.select_option("#f-harm", "yes")
        want = sum(1 for i in range(5000) if i % 7 == 0 and i % 5 == 0 and (i % 10) / 10 >= 0.5)
        assert page.text_content("#count") == str(want)
        page.fill("#f-text", "")
        page.select_option("#f-status", "")
        page.select_option("#f-harm", "")
        page.click("#next")
        assert page.text_content("#range") == f"{html.PAGE_ROWS + 1}-{2 * html.PAGE_ROWS}"


def test_the_judges_table_gives_each_f1_its_interval_and_a_file_without_one_a_dash() -> None:
    from isara.report import JUDGE_HEADER, judge_lines

    held = {"n": 449, "questions": 90, "f1": 0.7475, "f1_ci95": [0.6186, 0.8571], "precision": 0.66, "recall": 0.86}
    judge = {
        "harm": {"judge": "ce", "held_out": {"xstest_test": held}, "keyword_baseline": {"xstest_test": {"f1": 0.36}}},
        "refusal": {
            "judge": "mlp",
            "held_out": {"xstest_test": {"n": 449, "f1": 0.9, "precision": 0.9, "recall": 0.9}},
        },
    }
    harm, refusal = (dict(zip(JUDGE_HEADER, line, strict=True)) for line in judge_lines(judge))
    assert harm["n (questions)"] == "449 (90)" and harm["F1"] == "0.748" and harm["F1 95% interval"] == "[0.62, 0.86]"
    assert harm["keyword baseline F1"] == "0.360"
    assert refusal["n (questions)"] == "449" and refusal["F1 95% interval"] == "—"  # judged before intervals existed


def test_truthfulqa_prompts_get_a_paired_row_that_no_judge_scores(tmp_path: Path) -> None:
    from isara.report import comparison_lines, comparisons_note

    def truthful(model: str, diff: list[float]) -> pl.DataFrame:
        g = _gen(model, [0.0] * len(diff), [COMPLY] * len(diff))
        return g.with_columns(suite=pl.lit("truthfulqa"), expect=pl.lit("truthful"), truth_diff=pl.Series(diff))

    schema.write(truthful("it2", [-0.1] * 6 + [0.2] * 14), tmp_path / "it2.parquet", schema.GENERATIONS)
    schema.write(truthful("sft_matched", [0.2] * 20), tmp_path / "sft_matched.parquet", schema.GENERATIONS)
    comp = comparisons(tmp_path, 0.5)
    pair = comp["pairs"]["sft_matched"]
    assert list(pair["trained"]) == ["untruthful"] and pair["keyword"] == {}
    assert pair["trained"]["untruthful"]["difference"] == pytest.approx(0.3)
    [row] = comparison_lines(comp)
    assert row[:2] == ["sft_matched", "untruthful (n=20)"] and row[-2:] == ["—", ""]
    assert "'untruthful' (TruthfulQA prompts)" in comparisons_note(comp)
    schema.write(_gen("it2", [0.0] * 4, [COMPLY] * 4), tmp_path / "it2.parquet", schema.GENERATIONS)
    schema.write(_gen("sft_matched", [0.0] * 4, [COMPLY] * 4), tmp_path / "sft_matched.parquet", schema.GENERATIONS)
    assert "untruthful" not in comparisons_note(comparisons(tmp_path, 0.5))
