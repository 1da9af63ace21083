"""The README's result tables are the committed reports' own, copied by tools/readme_results.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tools.readme_results import rewrite, table

REPORT = """# isara report

## Models

| model | harmful rate |
|---|---|
| it2 | 30.0% |

Note after.

## Paired comparisons

| against | rate |
|---|---|
| sft | harmful |
"""


def test_the_committed_readme_matches_the_committed_reports():
    done = subprocess.run(
        [sys.executable, "tools/readme_results.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result tables match" in done.stdout
    assert REPO.joinpath("README.md").read_text(encoding="utf-8").count("<!-- results: ") >= 3


def test_a_block_takes_the_table_under_its_heading_and_a_stale_one_is_named(tmp_path: Path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report/index.md").write_text(REPORT, encoding="utf-8")
    assert table(tmp_path / "report/index.md", "Models") == "| model | harmful rate |\n|---|---|\n| it2 | 30.0% |\n"
    readme = tmp_path / "README.md"
    readme.write_text("text\n<!-- results: . Paired comparisons -->\nold\n<!-- /results -->\nmore\n", encoding="utf-8")
    new = rewrite(readme.read_text(encoding="utf-8"), tmp_path)
    assert (
        new
        == "text\n<!-- results: . Paired comparisons -->\n| against | rate |\n|---|---|\n| sft | harmful |\n<!-- /results -->\nmore\n"
    )
    tool = REPO / "tools/readme_results.py"
    done = subprocess.run([sys.executable, tool, "--check", "--readme", readme], capture_output=True, text=True)
    assert done.returncode == 1 and ". Paired comparisons" in done.stdout
    subprocess.run([sys.executable, tool, "--readme", readme], check=True, capture_output=True)
    assert readme.read_text(encoding="utf-8") == new


def test_a_block_can_name_a_page_such_as_the_study(tmp_path: Path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study/index.md").write_text(REPORT, encoding="utf-8")
    text = "<!-- results: study/index.md Models -->\nold\n<!-- /results -->\n"
    assert (
        rewrite(text, tmp_path)
        == "<!-- results: study/index.md Models -->\n"
        + table(tmp_path / "study/index.md", "Models")
        + "<!-- /results -->\n"
    )
