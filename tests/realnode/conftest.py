"""The real-node tier runs only when chosen (``pytest -m realnode``, ``make test-realnode``):
it needs root, containerd and the images, and takes minutes. Unchosen, its tests are
deselected (not skipped); chosen, they run in the order below, the teardown check last."""

from __future__ import annotations

import pytest

from tests.support.realnode_fixtures import chat_app, real_cluster, real_operator  # noqa: F401

ORDER = (
    "test_node_network",
    # Its own cluster (make cluster NODE=real), up and down before the session's starts.
    "test_make_deploy",
    "test_real_operator",
    "test_real_chat",
    "test_real_django",
    "test_real_migrate",
    "test_real_channels4",
    "test_real_autoscaling",
    "test_real_disruptions",
    "test_real_failures",
    "test_real_restricted",
    "test_app_deploys",
    "test_runtime_upgrade",
    "test_real_reshard",
    "test_redis_failover",
    # Stops the node: always last (a module not listed here runs before it).
    "test_real_teardown",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realnode: real pods on a real node (root, containerd; make test-realnode)"
    )


def _rank(item: pytest.Item) -> float:
    name = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
    if name in ORDER:
        return ORDER.index(name)
    return ORDER.index("test_real_teardown") - 0.5


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real = [i for i in items if i.get_closest_marker("realnode")]
    if "realnode" not in (config.getoption("-m") or ""):
        if real:
            config.hook.pytest_deselected(items=real)
            items[:] = [i for i in items if i not in real]
        return
    others = [i for i in items if i not in real]
    items[:] = others + sorted(real, key=_rank)
