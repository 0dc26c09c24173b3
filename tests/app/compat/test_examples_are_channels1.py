"""The ported examples (examples/channels1/) are Channels 1.x code but for their import lines.

Every ``from channelapp.compat[.X] import names`` is rewritten back to
``from channels[.X] import names``; each name must then be part of the Channels 1.1 API
(the table below, per module), and nothing else of channelapp may be used. So an example
that reached for an API Channels 1 did not have fails here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "channels1"

#: The public names of the Channels 1.1 modules a project imported from (channels 1.1.8).
CHANNELS_1_1_API: dict[str, set[str]] = {
    "channels": {
        "DEFAULT_CHANNEL_LAYER",
        "channel_layers",
        "Channel",
        "Group",
        "route",
        "route_class",
        "include",
    },
    "channels.channel": {"Channel", "Group"},
    "channels.message": {"Message", "PendingMessageStore", "pending_message_store"},
    "channels.sessions": {
        "session_for_reply_channel",
        "channel_session",
        "wait_channel_name",
        "requeue_messages",
        "enforce_ordering",
        "http_session",
        "channel_and_http_session",
    },
    "channels.auth": {
        "transfer_user",
        "channel_session_user",
        "http_session_user",
        "channel_session_user_from_http",
        "channel_and_http_session_user_from_http",
    },
    "channels.routing": {
        "Router",
        "Route",
        "RouteClass",
        "Include",
        "null_consumer",
        "connect_consumer",
        "route",
        "route_class",
        "include",
    },
    "channels.exceptions": {
        "ConsumeLater",
        "ResponseLater",
        "RequestTimeout",
        "RequestAborted",
        "DenyConnection",
        "ChannelSocketException",
        "WebsocketCloseException",
        "SendNotAvailableOnDemultiplexer",
    },
    "channels.handler": {"AsgiRequest", "AsgiHandler", "ViewConsumer"},
    "channels.asgi": {
        "InvalidChannelLayerError",
        "ChannelLayerManager",
        "ChannelLayerWrapper",
        "get_channel_layer",
        "channel_layers",
    },
    "channels.generic": {"BaseConsumer"},
    "channels.generic.base": {"BaseConsumer"},
    "channels.generic.websockets": {
        "WebsocketConsumer",
        "JsonWebsocketConsumer",
        "WebsocketMultiplexer",
        "WebsocketDemultiplexer",
    },
    "channels.signals": {
        "consumer_started",
        "consumer_finished",
        "worker_ready",
        "worker_process_ready",
    },
}

COMPAT = "channelapp.compat"


def channels_module(module: str) -> str | None:
    """``channelapp.compat[.X]`` -> ``channels[.X]``; None for anything else."""
    if module == COMPAT:
        return "channels"
    if module.startswith(COMPAT + "."):
        return "channels" + module[len(COMPAT) :]
    return None


def violations(source: str, filename: str = "<source>") -> list[str]:
    """What in ``source`` is not Channels 1 once its compat imports are read as ``channels``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("channelapp", "channels"):
                    found.append(f"{where}: import {alias.name} (use from-imports of the API)")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top == "channels":
                found.append(f"{where}: imports the real {node.module}, not channelapp.compat")
            elif top == "channelapp":
                module = channels_module(node.module)
                if module is None:
                    found.append(f"{where}: {node.module} is channelapp's own API, not Channels 1")
                    continue
                api = CHANNELS_1_1_API.get(module)
                if api is None:
                    found.append(f"{where}: Channels 1.1 had no module {module}")
                    continue
                for alias in node.names:
                    if alias.name not in api:
                        found.append(f"{where}: Channels 1.1's {module} had no {alias.name}")
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name == "channelapp":
                found.append(f"{where}: refers to channelapp outside an import")
    return found


def example_files() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.py"))


def test_the_checker_catches_what_channels_1_did_not_have() -> None:
    assert (
        violations(
            "from channelapp.compat import Group\nfrom channelapp.compat.auth import channel_session_user\n"
        )
        == []
    )
    bad = violations(
        "from channelapp.compat import Group, Room\n"
        "from channelapp.routing import path\n"
        "from channelapp.compat.generic.websockets import SyncJsonWebsocketConsumer\n"
        "from channelapp.compat.nowhere import x\n"
        "from channels import Group\n"
        "import channelapp.compat\n"
        "x = channelapp.compat.Group\n"
    )
    assert len(bad) == 7, bad
    assert "Channels 1.1's channels had no Room" in bad[0]
    assert "channelapp.routing is channelapp's own API" in bad[1]
    assert "channels.generic.websockets had no SyncJsonWebsocketConsumer" in bad[2]


def test_both_examples_are_there() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in example_files()}
    for expected in (
        "liveblog/liveblog/routing.py",
        "liveblog/posts/consumers.py",
        "liveblog/posts/models.py",
        "multichat/multichat/routing.py",
        "multichat/chat/routing.py",
        "multichat/chat/consumers.py",
        "multichat/chat/models.py",
    ):
        assert expected in names


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_an_example_file_is_channels_1_but_for_its_imports(path: Path) -> None:
    assert violations(path.read_text(), str(path.relative_to(ROOT))) == []


def test_what_the_examples_import_is_there_in_channelapp_compat() -> None:
    imported: set[tuple[str, str]] = set()
    for path in example_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(COMPAT):
                imported.update((node.module, a.name) for a in node.names)  # type: ignore[misc]
    assert len({m for m, _ in imported}) >= 2
    for module, name in sorted(imported):
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


@pytest.mark.parametrize("project", ["liveblog", "multichat"])
def test_the_settings_keep_channel_layers_routing(project: str) -> None:
    tree = ast.parse((EXAMPLES / project / project / "settings.py").read_text())
    assigned = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert "CHANNELAPP_ROUTING" not in assigned
    layers = ast.literal_eval(
        ast.unparse(assigned["CHANNEL_LAYERS"]).replace(
            "os.environ.get('REDIS_HOST', 'localhost')", "'localhost'"
        )
    )
    assert layers["default"]["ROUTING"] == f"{project}.routing.channel_routing"
    assert layers["default"]["BACKEND"] == "asgi_redis.RedisChannelLayer"
