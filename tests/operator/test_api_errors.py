"""One clear line for failed API calls, and Events that a retry loop cannot flood (pure)."""

from __future__ import annotations

import json

from channelapp_operator.api_errors import ChildApplyError, describe
from channelapp_operator.event_limiter import EventLimiter
from kubernetes.client.exceptions import ApiException


def status_error(code: int, message: str) -> ApiException:
    body = {"kind": "Status", "status": "Failure", "message": message, "code": code}
    return ApiException(status=code, reason="Unprocessable Entity", body=json.dumps(body).encode())


def test_api_error_gives_the_servers_message_only() -> None:
    msg = 'Deployment.apps "x" is invalid: spec.template.spec.containers[0].env[0].name: Invalid'
    text = str(ChildApplyError("applying Deployment/x", status_error(422, msg)))
    assert text == f"applying Deployment/x: {msg}"
    assert "HTTP" not in text and "Traceback" not in text and "{" not in text


def test_error_without_status_body_is_one_line() -> None:
    assert describe(ApiException(status=503, reason="Service Unavailable")) == (
        "503 Service Unavailable"
    )
    assert describe(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert len(describe(RuntimeError("x" * 5000))) <= 600


def test_event_limiter_posts_new_messages_and_repeats_rarely() -> None:
    now = [0.0]
    limiter = EventLimiter(repeat_after=300, clock=lambda: now[0])
    key = ("ns", "app", "ApplyFailed")
    posted = 0
    for second in range(60):
        now[0] = float(second)
        posted += limiter.allow(key, "applying Deployment/x: refused")
    assert posted == 1  # 60 retries in a minute, one Event
    assert limiter.allow(key, "applying Service/x: refused")  # a new reason goes out at once
    now[0] = 400.0
    assert limiter.allow(key, "applying Service/x: refused")  # and again after the window
    limiter.forget(("ns", "app"))
    assert limiter.allow(key, "applying Service/x: refused")
