"""One clear line for a failed Kubernetes call: the API server's own message, no HTTP dump."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

MAX_MESSAGE = 600


class ChildApplyError(Exception):
    """Applying one child failed; ``str()`` names the child and the server's reason."""

    def __init__(self, child: str, cause: BaseException) -> None:
        self.child = child
        super().__init__(f"{child}: {describe(cause)}")


def describe(exc: BaseException) -> str:
    """The ``message`` of a Kubernetes Status body, else the exception's first line."""
    if isinstance(exc, ApiException):
        text = _status_message(exc.body) or f"{exc.status} {exc.reason}".strip()
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else type(exc).__name__
        if not lines or type(exc).__name__ not in text:
            text = f"{type(exc).__name__}: {text}" if lines else text
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _status_message(body: object) -> str | None:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str) or not body:
        return None
    try:
        status = json.loads(body)
    except ValueError:
        return None
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return None
