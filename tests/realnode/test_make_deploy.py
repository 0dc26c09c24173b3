"""A newcomer's first cluster: ``make cluster NODE=real`` then ``make deploy``, as typed, give a
chat whose printed URL serves the page and chats over a WebSocket from this machine;
``make undeploy`` and ``make cluster-down`` remove it all.

Runs first in the tier (tests/realnode/conftest.py), before the session's own cluster
starts: one real node at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest

from devtools import realnode
from devtools.paths import REPO, STATE_DIR, bin_dir
from devtools.realnode.common import STATE_FILE

# Image builds (when the sources changed), the node, the chart, the app and the teardown.
pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.timeout(3000)]

# What make and pytest pass down to their children: a newcomer's shell has none of it.
NOT_A_NEWCOMERS = ("KUBECONFIG", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def newcomer_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in NOT_A_NEWCOMERS and not k.startswith("PYTEST_")
    }


def make(log_dir: Path, *args: str, timeout: float) -> str:
    """``make ARGS`` in the repository's root; its output (stdout and stderr) if it succeeds."""
    log = log_dir / ("make-" + "-".join(a.replace("=", "_") for a in args) + ".log")
    # Output to a file, not a pipe: the cluster's processes outlive make.
    with log.open("w") as out:
        proc = subprocess.run(
            ["make", *args],
            cwd=REPO,
            env=newcomer_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    text = log.read_text()
    assert proc.returncode == 0, f"make {' '.join(args)} exited {proc.returncode}:\n{text[-6000:]}"
    return text


async def chat_once(url: str) -> dict[str, str]:
    """One WebSocket to the chat; what the room sends back for one message."""
    room = f"newcomer-{uuid.uuid4().hex[:6]}"
    text = f"hello {uuid.uuid4().hex[:8]}"
    ws_url = url.replace("http://", "ws://") + f"ws/chat/{room}/"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, heartbeat=None) as ws:
        await ws.send_json({"user": "newcomer", "message": text})
        async with asyncio.timeout(20):
            while True:
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                got: dict[str, str] = json.loads(msg.data)
                if got.get("message") == text:
                    return got


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir() / "kubectl"), "--kubeconfig", str(STATE_DIR / "kubeconfig"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_cluster_then_make_deploy_serve_the_chat(tmp_path: Path) -> None:
    assert not STATE_FILE.exists(), f"a real node is already up ({STATE_FILE}): make cluster-down"
    try:
        up = make(tmp_path, "cluster", "NODE=real", timeout=1800)
        assert f"export KUBECONFIG={STATE_DIR / 'kubeconfig'}" in up, up[-3000:]
        deployed = make(tmp_path, "deploy", timeout=900)
        print(deployed[-2500:])
        urls = re.findall(r"^chat: (http://[\d.]+:\d+/)", deployed, re.MULTILINE)
        assert urls, deployed[-3000:]
        url = urls[-1]

        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert b"<!doctype html>" in resp.read().lower()
        got = asyncio.run(chat_once(url))
        assert got["user"] == "newcomer", got

        # The chart and the example ran the node's own images.
        pods = json.loads(kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
        images = {c["image"] for p in pods for c in p["spec"]["containers"]}
        ours = {i for i in images if i.startswith("localhost/channelapp/")}
        assert {i.split(":")[0].rsplit("/", 1)[1] for i in ours} >= {"operator", "app", "redis"}

        make(tmp_path, "undeploy", timeout=600)
        left = kubectl("get", "channelapps,deployments,statefulsets", "-A", "-o", "name")
        assert left.returncode == 0 and left.stdout.split() == [], left
    finally:
        down = make(tmp_path, "cluster-down", timeout=600)
    assert "real node stopped" in down, down
    assert not STATE_FILE.exists() and not (STATE_DIR / "kubeconfig").exists()
    assert realnode.leftovers() == []
