"""The tenant boundary's pure rules: ownership, redaction, failure classes, dial manners,
conditions that agree, ServiceAccount tokens, permission checks (no cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from channelapp_operator import builders, ownership
from channelapp_operator.dial_manners import DialManners, backoff_delay
from channelapp_operator.permissions import Need, PermissionCheck, needs_for
from channelapp_operator.redis_urls import (
    classify,
    describe_failure,
    has_password,
    redact_text,
    redact_url,
    shard_index,
)
from channelapp_operator.status import progressing

SPEC: dict[str, Any] = {
    "image": "example/app:1",
    "app": "chat.app:app",
    "redis": {"managed": {"shards": 1}},
}


# --- ownership ------------------------------------------------------------------------------


def obj(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "billing", "ownerReferences": list(refs)}}


@pytest.mark.parametrize(
    ("live", "uid", "owned", "owner"),
    [
        (obj(), "u1", False, None),
        ({"metadata": {"name": "billing"}}, "u1", False, None),
        (obj({"kind": "ChannelApp", "name": "a", "uid": "u1", "controller": True}), "u1", True,
         "ChannelApp/a (uid u1)"),
        (obj({"kind": "ChannelApp", "name": "b", "uid": "u2", "controller": True}), "u1", False,
         "ChannelApp/b (uid u2)"),
        # Owned but not controlled (a plain ownerReference) is not this app's child.
        (obj({"kind": "ChannelApp", "name": "a", "uid": "u1"}), "u1", False, None),
        (obj({"kind": "ChannelApp", "name": "a", "uid": "u1", "controller": True}), "", False,
         "ChannelApp/a (uid u1)"),
    ],
)  # fmt: skip
def test_a_child_is_the_apps_only_when_its_controller_is_the_app(
    live: dict[str, Any], uid: str, owned: bool, owner: str | None
) -> None:
    assert ownership.controlled_by(live, uid) is owned
    assert ownership.owner_description(live) == owner


def test_child_exists_names_the_object_and_keeps_its_owner_for_the_log() -> None:
    foreign = obj({"kind": "Deployment", "name": "x", "uid": "u9", "controller": True})
    refused = ownership.refusal("Service", foreign)
    assert str(refused).startswith("Service/billing exists and is not this app's")
    assert "Deployment" not in str(refused) and "u9" not in str(refused)
    assert refused.log_detail() == "Service/billing is controlled by Deployment/x (uid u9)"
    unowned = ownership.refusal("Service", obj())
    assert str(unowned) == str(refused)
    assert unowned.log_detail() == "Service/billing is not controlled by any owner"


# --- URLs and failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted", "secret"),
    [
        ("redis://h:6379/0", "redis://h:6379/0", False),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0", True),
        ("redis://user:pw@h/0", "redis://user:***@h/0", True),
        ("rediss://user@h/0", "rediss://user@h/0", False),
        ("redis://h/0?password=pw", "redis://h/0?password=%2A%2A%2A", True),
        ("redis://h/0?db=1&Password=pw", "redis://h/0?db=1&Password=%2A%2A%2A", True),
        ("redis://h/0?db=1", "redis://h/0?db=1", False),
        ("redis://:p%40ss@h/0", "redis://:***@h/0", True),
        ("redis://a@b:pw@h.example:6379/0", "redis://a@b:***@h.example:6379/0", True),
        ("redis://us@er@h:6379/0", "redis://us@er@h:6379/0", False),
        ("redis://h/0?pass%77ord=pw", "redis://h/0?password=%2A%2A%2A", True),
        ("redis://h/0?db=0&%7a=1", "redis://h/0?db=0&%7a=1", True),
        ("redis://h/0?client_name=a%20b", "redis://h/0?client_name=a%20b", False),
        ("redis+sentinel://s1:26379,s2:26379/m/0", "redis+sentinel://s1:26379,s2:26379/m/0", False),
        ("redis+sentinel://:pw@s1:26379,s2/m", "redis+sentinel://:***@s1:26379,s2/m", True),
        (
            "redis+sentinel://s1,s2/m?sentinel_password=pw",
            "redis+sentinel://s1,s2/m?sentinel_password=%2A%2A%2A",
            True,
        ),
    ],
)
def test_passwords_in_urls_are_found_and_redacted(url: str, redacted: str, secret: bool) -> None:
    assert has_password(url) is secret
    assert redact_url(url) == redacted
    assert "pw" not in redact_url(url).replace("Password", "").replace("password", "")


def test_urls_inside_messages_are_redacted() -> None:
    text = (
        "Error connecting to redis://:hunter2@h:1/0 and rediss://h/0?password=hunter2 and "
        "redis+sentinel://:hunter2@s1,s2/m now"
    )
    out = redact_text(text)
    assert "hunter2" not in out
    assert "redis://:***@h:1/0" in out and "now" in out


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ('redis shard 0 (redis://h:1/0) is unavailable during statistics: Protocol error, '
         'got "H" as reply type byte', "not a Redis server"),
        ("unparseable reply from redis: b'HTTP/1.1 400'", "not a Redis server"),
        ("Error 111 connecting to 127.0.0.1:1. Connect call failed ('127.0.0.1', 1).",
         "connection refused"),
        ("Error 111 connecting to h:1. Connection refused.", "connection refused"),
        ("Timeout connecting to server", "timeout"),
        ("redis shard 1 (h): authentication failed: WRONGPASS invalid username-password pair",
         "authentication failed"),
        ("Error -2 connecting to nohost:6379. Name or service not known.", "name not resolved"),
        ("Connection closed by server.", "connection closed"),
        ("is unavailable during a script call: not sent: connection to redis lost",
         "connection closed"),
        ("is unavailable during a script call: no reply within 2.0s", "timeout"),
        ("something else entirely", "unreachable"),
    ],
)  # fmt: skip
def test_failures_are_classified_not_echoed(message: str, kind: str) -> None:
    assert classify(message) == kind


def test_a_failure_names_its_shard_redacted_and_its_class_only() -> None:
    text = 'redis shard 2 (x) is unavailable: Protocol error, got "H" as reply type byte'
    assert shard_index(text) == 2
    assert shard_index("no shard here") is None
    line = describe_failure("redis://:pw@h:80/0", text)
    assert line == "redis://:***@h:80/0: not a Redis server"


def test_urls_with_passwords_never_reach_pod_env() -> None:
    spec = {**SPEC, "redis": {"external": {"urls": ["redis://h/0", "redis://:pw@h2/0"]}}}
    with pytest.raises(builders.SpecRefused) as refused:
        builders.children("chat", "ns", "uid", spec)
    assert refused.value.reason == "PasswordInURL"
    assert "pw@" not in str(refused.value) and "passwordSecretRef" in str(refused.value)
    spec["redis"]["external"]["urls"] = ["redis://h/0?password=pw"]
    with pytest.raises(builders.SpecRefused):
        builders.children("chat", "ns", "uid", spec)


# --- ServiceAccount tokens ------------------------------------------------------------------


def pod_specs(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{m['kind']}/{m['metadata']['name']}": m["spec"]["template"]["spec"]
        for m in builders.children("chat", "ns", "uid", spec)
        if m["kind"] in ("Deployment", "StatefulSet")
    }


def test_pods_get_no_service_account_token_by_default() -> None:
    specs = pod_specs(SPEC)
    assert set(specs) == {"StatefulSet/chat-redis", "StatefulSet/chat-redis-sentinel",
                          "Deployment/chat-protocol", "Deployment/chat-worker"}  # fmt: skip
    for pod in specs.values():
        assert pod["automountServiceAccountToken"] is False
        assert "serviceAccountName" not in pod


def test_a_named_service_account_is_mounted_in_app_pods_only() -> None:
    specs = pod_specs({**SPEC, "serviceAccountName": "chat-reader"})
    for name in ("Deployment/chat-protocol", "Deployment/chat-worker"):
        assert specs[name]["serviceAccountName"] == "chat-reader"
        assert specs[name]["automountServiceAccountToken"] is True
    for name in ("StatefulSet/chat-redis", "StatefulSet/chat-redis-sentinel"):
        assert specs[name]["automountServiceAccountToken"] is False


# --- dial manners ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (60, 30.0)],
)
def test_backoff_doubles_and_is_capped(failures: int, delay: float) -> None:
    assert backoff_delay(failures) == delay


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_unreachable_shard_waits_out_its_backoff_and_a_healthy_one_does_not() -> None:
    clock = Clock()
    manners = DialManners(clock=clock)
    urls = ["redis://a/0", "redis://b/0"]
    assert manners.may_read(urls)
    manners.record(urls, ["redis://b/0"])
    assert manners.waiting(urls) == ["redis://b/0"]
    assert not manners.may_read(urls)
    clock.now += 1.0
    assert manners.may_read(urls)
    manners.record(urls, ["redis://b/0"])
    clock.now += 1.5
    assert not manners.may_read(urls)  # 2 s after the second failure
    clock.now += 0.5
    assert manners.may_read(urls)
    manners.record(urls, [])
    assert manners.waiting(urls) == [] and manners.may_read(urls)


def test_dials_per_app_per_second_are_bounded() -> None:
    clock = Clock()
    manners = DialManners(clock=clock, rate=8.0, base=0.0)  # no backoff: the budget alone
    urls = [f"redis://h{i}/0" for i in range(64)]
    allowed = 0
    dials = 0
    for _ in range(200):  # 20 s of 0.1 s ticks, every shard failing
        if manners.may_read(urls):
            allowed += 1
            dials += manners.dials(urls)
            manners.record_all_failed(urls)
        clock.now += 0.1
    # The bucket holds one read of 64 dials; it refills at 8 a second.
    assert dials <= 64 + 8 * 20
    assert allowed >= 2


def test_shards_that_answer_cost_no_dials() -> None:
    manners = DialManners(clock=Clock(), rate=1.0)
    urls = [f"redis://h{i}/0" for i in range(10)]
    assert manners.may_read(urls)
    manners.record(urls, [])
    for _ in range(100):
        assert manners.may_read(urls)


# --- conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "pending", "expected"),
    [
        (None, [], (False, "RolloutComplete")),
        (None, ["workers"], (True, "RollingOut")),
        (("ApplyFailed", "no"), [], (False, "ApplyFailed")),
        (("ChildExists", "Service/x exists"), ["workers"], (False, "ChildExists")),
    ],
)
def test_progressing_never_says_complete_next_to_a_failed_apply(
    failure: tuple[str, str] | None, pending: list[str], expected: tuple[bool, str]
) -> None:
    status, reason, message = progressing(failure, pending)
    assert (status, reason) == expected
    if failure is not None:
        assert failure[1] in message


# --- permissions ----------------------------------------------------------------------------


def test_permission_check_fails_while_one_need_is_denied_and_recovers() -> None:
    denied: set[str] = {"patch channelapps/status.channelapp.dev"}
    asked: list[dict[str, Any]] = []

    def reviewer(review: dict[str, Any]) -> dict[str, Any]:
        asked.append(review)
        attrs = review["spec"]["resourceAttributes"]
        need = Need(attrs["group"], attrs["resource"], attrs["verb"], attrs.get("subresource", ""))
        return {"status": {"allowed": str(need) not in denied}}

    forbidden = [0]
    clock = Clock()
    check = PermissionCheck(reviewer, needs_for(["ns1"], "peer"), lambda: forbidden[0], clock)
    assert not check.ok() and check.due()
    check.check_once()
    assert not check.ok()
    assert check.missing == ["patch channelapps/status.channelapp.dev in namespace ns1"]
    assert {r["spec"]["resourceAttributes"]["resource"] for r in asked} >= {"kopfpeerings"}
    denied.clear()
    assert not check.due()
    forbidden[0] += 1  # a call met a 403: look again now
    assert check.due()
    check.check_once()
    assert check.ok()
    clock.now += 61
    assert check.due()


def test_cluster_wide_needs_have_no_namespace_and_standalone_no_peering() -> None:
    needs = needs_for([], None)
    assert {ns for ns, _ in needs} == {""}
    assert not any(need.group == "kopf.dev" for _, need in needs)
    assert any(need.resource == "clusterkopfpeerings" for _, need in needs_for([], "p"))


def test_apply_bodies_are_utf8_json_that_yaml_reads_back_unchanged() -> None:
    import yaml
    from channelapp_operator.kube import yaml_json

    value = {"env": 'hi \U0001f600 \u00e9 \x01 \x7f \x85 \u2028 < & " \\ \n\t'}
    body = yaml_json(value)
    assert "\U0001f600".encode() in body  # whole, not a pair of surrogate escapes
    assert yaml.safe_load(body.decode()) == value
