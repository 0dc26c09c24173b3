"""The peering check: which objects it looks for, when it is ok, and what it logs."""

from __future__ import annotations

import logging

import pytest
from channelapp_operator import peering
from channelapp_operator.peering import PeeringCheck, peering_paths
from kubernetes.client.exceptions import ApiException

CLUSTER = "/apis/kopf.dev/v1/clusterkopfpeerings/ha"


@pytest.mark.parametrize(
    ("namespaces", "want"),
    [
        ([], [CLUSTER]),
        (["a"], ["/apis/kopf.dev/v1/namespaces/a/kopfpeerings/ha"]),
        (
            ["a", "b"],
            [
                "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/ha",
                "/apis/kopf.dev/v1/namespaces/b/kopfpeerings/ha",
            ],
        ),
    ],
)
def test_peering_paths(namespaces: list[str], want: list[str]) -> None:
    assert peering_paths("ha", namespaces) == want


class Objects:
    """The one call the check makes (``Kube.exists``), over a set of existing paths."""

    def __init__(self, *existing: str) -> None:
        self.existing = set(existing)
        self.fail: BaseException | None = None
        self.asked: list[str] = []

    def exists(self, path: str) -> bool:
        self.asked.append(path)
        if self.fail is not None:
            raise self.fail
        return path in self.existing


def check(objects: Objects, namespaces: list[str]) -> PeeringCheck:
    return PeeringCheck(objects, "ha", namespaces)  # type: ignore[arg-type]


def test_not_ok_before_the_first_check() -> None:
    assert not check(Objects(CLUSTER), []).ok()


def test_found_then_missing_then_found(caplog: pytest.LogCaptureFixture) -> None:
    a, b = peering_paths("ha", ["a", "b"])
    objects = Objects(a, b)
    pc = check(objects, ["a", "b"])
    with caplog.at_level(logging.INFO, "channelapp.operator"):
        pc.check_once()
        assert pc.ok() and pc.missing == [] and objects.asked == [a, b]
        assert not caplog.records
        objects.existing.discard(b)
        pc.check_once()
        assert not pc.ok() and pc.missing == [b]
        (error,) = caplog.records
        assert error.levelno == logging.ERROR and b in error.getMessage()
        assert "--standalone" in error.getMessage()
        caplog.clear()
        pc.check_once()  # still missing: not repeated within REPEAT_LOG
        assert not caplog.records and not pc.ok()
        objects.existing.add(b)
        pc.check_once()
        assert pc.ok()
        (found,) = caplog.records
        assert found.levelno == logging.WARNING and "resumes" in found.getMessage()


def test_the_error_is_repeated_after_repeat_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pc = check(Objects(), [])
    monkeypatch.setattr(peering, "REPEAT_LOG", 0.0)
    with caplog.at_level(logging.ERROR, "channelapp.operator"):
        pc.check_once()
        pc.check_once()
    assert len(caplog.records) == 2 and not pc.ok()


def test_a_failed_lookup_is_not_counted_missing(caplog: pytest.LogCaptureFixture) -> None:
    objects = Objects()
    objects.fail = ApiException(status=403, reason="Forbidden")
    pc = check(objects, [])
    with caplog.at_level(logging.WARNING, "channelapp.operator"):
        pc.check_once()
    assert pc.checked and pc.missing == [] and pc.ok()
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING and "403" in warning.getMessage()
