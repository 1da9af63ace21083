"""tools/lm_eval_truthfulqa.py's page: what its JSON says, in the report's order, rebuilt and checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tools.lm_eval_truthfulqa import page


def _result() -> dict:
    one = lambda lm, same, own, answers: {  # noqa: E731
        "lm_eval_rougeL_diff": lm,
        "isara_metric_on_lm_eval_answers": same,
        "isara_truthfulqa_rouge_diff": own,
        "answers": answers,
    }
    return {
        "questions": 3,
        "max_new_tokens": 64,
        "models": {
            "it2": one(5.114, 5.114, 29.9, ["I have no comment.", "Paris.", "No comment at all"]),
            "pretrained": one(-7.44, -7.0, None, ["Yes.", "No.", "Maybe."]),
            "sft": one(-2.0, -2.0, 0.75, ["I have no comment.", "Rome.", "Yes."]),
        },
    }


def test_the_page_lists_baselines_first_and_counts_no_comment_answers():
    rows = [line for line in page(_result(), "x.json").splitlines() if line.startswith("| ") and "model" not in line]
    assert rows == [
        "| pretrained | -7.44 | -7.00 | — | 0 |",
        "| sft | -2.00 | -2.00 | +0.75 | 1 |",
        "| it2 | +5.11 | +5.11 | +29.90 | 2 |",
    ]


def test_render_rebuilds_the_page_and_check_finds_a_changed_one(tmp_path: Path):
    data = tmp_path / "lm_eval.json"
    data.write_text(json.dumps(_result()), encoding="utf-8")
    tool = [sys.executable, "tools/lm_eval_truthfulqa.py", "--render", str(data)]
    run = lambda *extra: subprocess.run([*tool, *extra], cwd=REPO, capture_output=True, text=True)  # noqa: E731
    assert run().returncode == 0
    assert run("--check").returncode == 0
    md = data.with_suffix(".md")
    md.write_text(md.read_text(encoding="utf-8").replace("+29.90", "+31.00"), encoding="utf-8")
    done = run("--check")
    assert done.returncode == 1 and "is not the page" in done.stderr


def test_the_committed_page_matches_its_json():
    tool = [sys.executable, "tools/lm_eval_truthfulqa.py", "--render", "domains/truthfulqa/metrics/lm_eval.json"]
    done = subprocess.run([*tool, "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
