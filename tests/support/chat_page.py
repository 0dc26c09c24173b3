"""tests/browser/chat.mjs, the chat page driven in two tabs of Debian's headless Chromium by
playwright-core: started the same way by the browser test and the real-node test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from devtools.paths import REPO

BROWSER = REPO / "tests" / "browser"


def start_chat_page(url: str, screenshot: Path, *args: str) -> subprocess.Popen[str]:
    """``node chat.mjs URL SCREENSHOT ARGS...`` with pipes on stdin, stdout and stderr."""
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    assert node and chromium, "node and Debian's chromium are installed by .ci/run"
    assert (BROWSER / "node_modules" / "playwright-core").is_dir(), "run: npm ci in tests/browser"
    return subprocess.Popen(
        [node, str(BROWSER / "chat.mjs"), url, str(screenshot), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=BROWSER,
        env={**os.environ, "CHROMIUM": chromium},
    )


def page_result(out: str) -> dict[str, Any]:
    """The JSON the page prints last."""
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result
