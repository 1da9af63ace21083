"""The browser harness (tests/browser.py) sees what it should, so a clean result from it means something."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import browser
from tests.browser import open_page

# Each test starts a Chromium (about 1.5 s): the fast tier runs none of them.
pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def html(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "page.html"
    path.write_text(f"<!doctype html><meta charset=utf-8><title>t</title>{body}", encoding="utf-8")
    return path


def test_clean_page_has_no_errors_and_stays_local(tmp_path: Path) -> None:
    page = html(tmp_path, '<p id="x">hello</p><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">')
    with open_page(page) as opened:
        assert opened.page.inner_text("#x") == "hello"
        assert opened.console_errors == []
        assert opened.outside_requests == []


def test_console_error_is_recorded(tmp_path: Path) -> None:
    with open_page(html(tmp_path, '<script>console.error("x")</script>')) as opened:
        assert opened.console_errors == ["x"]


def test_uncaught_exception_is_recorded(tmp_path: Path) -> None:
    with open_page(html(tmp_path, '<script>throw new TypeError("boom")</script>')) as opened:
        assert opened.console_errors == ["uncaught TypeError: boom"]


def test_outside_requests_are_recorded_and_blocked(tmp_path: Path) -> None:
    body = '<img id="i" src="http://example.com/a.png"><script src="https://cdn.example.com/lib.js"></script>'
    with open_page(html(tmp_path, body)) as opened:
        assert sorted(opened.outside_requests) == ["http://example.com/a.png", "https://cdn.example.com/lib.js"]
        assert opened.page.eval_on_selector("#i", "img => img.naturalWidth") == 0  # never loaded
        # Chromium's "Failed to load resource" for these two is our block, already in outside_requests.
        assert opened.console_errors == []


def test_websocket_is_recorded_and_blocked(tmp_path: Path) -> None:
    with open_page(html(tmp_path, "")) as opened:
        opened.page.evaluate(
            """() => new Promise(done => {
                const socket = new WebSocket("wss://example.com/live");
                socket.onclose = done;
            })"""
        )
        assert opened.outside_requests == ["wss://example.com/live"]


def test_missing_local_file_is_still_an_error(tmp_path: Path) -> None:
    """The blocked-load filter drops only lines for outside requests: a broken local link is reported."""
    with open_page(html(tmp_path, '<img src="missing.png">')) as opened:
        assert opened.outside_requests == []
        assert len(opened.console_errors) == 1
        assert "net::ERR_FILE_NOT_FOUND" in opened.console_errors[0]


def test_screenshot_is_a_png(tmp_path: Path) -> None:
    with open_page(html(tmp_path, "<h1>shot</h1>")) as opened:
        shot = opened.screenshot(tmp_path / "shot.png")
    assert shot.read_bytes().startswith(PNG_MAGIC)


def test_missing_chromium_fails_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"run `make browser`"), open_page(html(tmp_path, "")):
        pass
