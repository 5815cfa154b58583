"""Headless Chromium for the tests of the static pages (``rankings.html``, ``report.html``): what a browser shows."""

from __future__ import annotations

import shutil
import subprocess

import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="no chromium on PATH (apt-get install chromium to run this test)")


def chromium(*args: str) -> str:
    """Run headless Chromium with ``args`` (``--dump-dom URL``, ``--screenshot=PNG URL``); returns its stdout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
