"""Where each benchmark leaves its figures for the report (``python -m bench.report``): one JSON
file per benchmark in ``bench/report/data/`` (``CHANNELAPP_BENCH_RESULTS`` to put them
elsewhere), replaced by the benchmark's next run."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine

REPORT = Path(__file__).parent / "report"


def results_dir() -> Path:
    return Path(os.environ.get("CHANNELAPP_BENCH_RESULTS") or REPORT / "data")


def save(bench: str, data: dict[str, Any]) -> Path:
    """Write ``data`` as the latest figures of ``bench``, with the machine and the time."""
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{bench}.json"
    payload = {
        "bench": bench,
        "machine": machine(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **data,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def load_all(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every benchmark's latest figures, by name."""
    found = {}
    for path in sorted((directory or results_dir()).glob("*.json")):
        data = json.loads(path.read_text())
        found[str(data.get("bench") or path.stem)] = data
    return found
