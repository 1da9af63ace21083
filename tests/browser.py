"""Open a self-contained HTML file in headless Chromium, offline, and record what went wrong on it.

Debian's Chromium (`make browser`) driven by playwright: `playwright install` would download a browser
build of its own, which an offline machine cannot fetch.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Error, Page, Route, WebSocketRoute

# The binary behind Debian's /usr/bin/chromium, which is a shell script that sources /etc/chromium.d/* and
# adds flags of its own (--enable-remote-extensions, --load-extension=...): launched directly, the flags
# below and playwright's are all it gets.
CHROMIUM = Path("/usr/lib/chromium/chromium")
# Playwright adds --headless, --no-sandbox (root in CI) and its own quiet defaults; these are named
# here so the page stays offline and quiet whatever playwright's defaults become.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# What a self-contained file may load: itself and what it builds in memory.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
# Chromium's own line for a request that was aborted, which here is one we blocked.
BLOCKED_LOAD = "Failed to load resource: net::ERR_FAILED"
TIMEOUT_MS = 10_000  # a local file loads in well under a second; a hang fails instead of waiting 30 s


def is_outside(url: str) -> bool:
    """Whether loading url would leave the file (anything but file:, data:, blob:, about:)."""
    return not url.startswith(LOCAL_SCHEMES)


@dataclass
class OpenPage:
    """A loaded page and what happened while it loaded and ran."""

    page: Page
    outside_requests: list[str] = field(default_factory=list)
    _console: list[tuple[str, str]] = field(default_factory=list)  # (text, url it names)

    @property
    def console_errors(self) -> list[str]:
        """Console errors and uncaught exceptions, less Chromium's line for each request we blocked."""
        blocked = set(self.outside_requests)
        return [text for text, url in self._console if not (text == BLOCKED_LOAD and url in blocked)]

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the full page to path."""
        self.page.screenshot(path=path, full_page=True)
        return path

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self._console.append((message.text, message.location.get("url", "")))

    def _on_page_error(self, error: Error) -> None:
        self._console.append((f"uncaught {error.name}: {error.message}", ""))

    def _block(self, route: Route) -> None:
        self.outside_requests.append(route.request.url)
        route.abort()

    def _block_socket(self, socket: WebSocketRoute) -> None:
        # Not connecting to the server is the block: the page sees the socket close.
        self.outside_requests.append(socket.url)
        socket.close()


@contextmanager
def open_page(path: Path) -> Iterator[OpenPage]:
    """Load path (a local HTML file) in a fresh headless Chromium; every outside request is recorded and aborted."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser`", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=list(FLAGS)
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            result = OpenPage(context.pages[0])  # a persistent context starts with one blank page
            context.route(is_outside, result._block)
            context.route_web_socket(is_outside, result._block_socket)
            result.page.on("console", result._on_console)
            result.page.on("pageerror", result._on_page_error)
            result.page.goto(Path(path).resolve().as_uri())
            yield result
        finally:
            context.close()
