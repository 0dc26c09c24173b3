"""The operator installed by helm from its own image runs in-cluster under its ServiceAccount."""

from __future__ import annotations

import time

import pytest

from devtools.kube import KubeCluster
from devtools.realnode.workloads import OPERATOR_NAMESPACE, operator_pod, pod_ready

pytestmark = [pytest.mark.realnode, pytest.mark.cluster]

WATCH_SECONDS = 130


def test_operator_probes_keep_passing_with_no_channelapp(real_operator: KubeCluster) -> None:
    kube = real_operator
    assert kube.kubectl_json("get", "channelapps", "-A")["items"] == []
    pod = operator_pod(kube)
    assert pod["spec"]["serviceAccountName"] == "channelapp-operator"
    assert pod["spec"]["nodeName"] == "real-node-0"
    name = pod["metadata"]["name"]
    deadline = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < deadline:
        pod = operator_pod(kube)
        status = pod["status"]["containerStatuses"][0]
        assert pod["metadata"]["name"] == name, "the operator pod was replaced"
        assert status["restartCount"] == 0, status
        assert pod_ready(pod), pod["status"]
        time.sleep(10)
    # A failing probe leaves an Unhealthy event even when it recovers before the threshold.
    # Counted after the second the pod became Ready: a readiness probe that runs before the
    # process listens is start-up, not a probe that stopped passing, and it can fall in that
    # same second (timestamps have whole seconds).
    ready_since = next(
        c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"
    )
    events = kube.kubectl_json(
        "get", "events", "-n", OPERATOR_NAMESPACE,
        "--field-selector", f"involvedObject.name={name},reason=Unhealthy",
    )["items"]  # fmt: skip
    failed = [
        f"{e.get('lastTimestamp') or e.get('eventTime')}: {e.get('message')}"
        for e in events
        if (e.get("lastTimestamp") or e.get("eventTime") or "") > ready_since
        or "Liveness" in str(e.get("message"))
    ]
    assert failed == [], failed
    # In-cluster, under its own ServiceAccount: it listed ChannelApps through the API server.
    logs = kube.kubectl("logs", "-n", OPERATOR_NAMESPACE, name).stdout
    assert "Traceback" not in logs, logs[-3000:]
