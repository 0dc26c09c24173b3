"""The Django user of a message, from its session cookie (real Django, real sessions in a
migrated SQLite database): the logged-in user, else AnonymousUser, never an error."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.support.django_fixtures import DjangoProject

DB_SESSION = "django.contrib.sessions.backends.db"


def users(project: DjangoProject, *header_sets: list[Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = project.probe("users", json.dumps(list(header_sets)))
    return result


def login(project: DjangoProject, username: str) -> str:
    sessionid: str = project.probe("login", username, f"{username}-password-1")["sessionid"]
    return sessionid


def test_the_session_cookie_of_a_logged_in_user_gives_that_user(
    django_project: DjangoProject,
) -> None:
    sid = login(django_project, "ann")
    seen = users(
        django_project,
        [["cookie", f"sessionid={sid}"]],
        [{"bytes": ["cookie", f"sessionid={sid}"]}],  # as the protocol server sends them
        [["host", "127.0.0.1"], ["Cookie", f"csrftoken=abc; sessionid={sid}; theme=dark"]],
        [["cookie", "csrftoken=abc"], ["cookie", f"sessionid={sid}"]],  # split over two headers
    )
    for result in seen:
        assert result == {
            "authenticated": True,
            "username": "ann",
            "user_class": "User",
            "session": DB_SESSION,
        }


def test_no_forged_tampered_or_expired_cookie_gives_anonymous_user(
    django_project: DjangoProject,
) -> None:
    sid = login(django_project, "bob")
    expired = login(django_project, "bob")
    assert django_project.probe("expire", expired) == {"expired": 1}
    tampered = sid[:-1] + ("a" if sid[-1] != "a" else "b")
    no_cookie, *forged = users(
        django_project,
        [["host", "127.0.0.1"]],
        [["cookie", f"sessionid={secrets.token_hex(16)}"]],
        [["cookie", f"sessionid={tampered}"]],
        [["cookie", f"sessionid={expired}"]],
        [["cookie", "sessionid='; DROP TABLE django_session; --"]],
        [["cookie", "sessionid=x"]],
        [["cookie", f"othersessionid={sid}"]],
    )
    anonymous = {"authenticated": False, "username": "", "user_class": "AnonymousUser"}
    assert no_cookie == {**anonymous, "session": None}
    *with_a_session, other_cookie = forged
    for result in with_a_session:
        assert result == {**anonymous, "session": DB_SESSION}
    assert other_cookie == {**anonymous, "session": None}
    # The real session still works after all that.
    assert users(django_project, [["cookie", f"sessionid={sid}"]])[0]["username"] == "bob"


def test_a_password_change_logs_the_session_out(django_project: DjangoProject) -> None:
    """Django's session auth hash is checked, as django.contrib.auth.get_user does."""
    sid = login(django_project, "carol")
    assert users(django_project, [["cookie", f"sessionid={sid}"]])[0]["authenticated"] is True
    django_project.probe("password", "carol", "a-new-password-2")
    assert users(django_project, [["cookie", f"sessionid={sid}"]])[0]["authenticated"] is False


def test_the_projects_session_cookie_name_and_engine_are_used(
    django_project: DjangoProject,
) -> None:
    """SESSION_COOKIE_NAME "site_session" and the signed-cookie engine (the cookie holds the
    signed session itself, so tampering breaks its signature)."""
    env = {
        "DJANGOPROJECT_PROBE_SETTINGS": "tests.support.djangoproject.variant_settings",
        "DJANGOPROJECT_VARIANT_SESSION_COOKIE_NAME": "site_session",
        "DJANGOPROJECT_VARIANT_SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
    }
    logged_in = django_project.probe("login", "dave", "dave-password-1", env=env)
    assert logged_in["cookie"] == "site_session"
    value = logged_in["sessionid"]
    assert value.count(":") >= 2  # signed data, not a database key
    tampered = value.replace(value[5], "A" if value[5] != "A" else "B", 1)
    right, wrong_name, forged = django_project.probe(
        "users",
        json.dumps(
            [
                [["cookie", f"site_session={value}"]],
                [["cookie", f"sessionid={value}"]],
                [["cookie", f"site_session={tampered}"]],
            ]
        ),
        env=env,
    )
    signed = "django.contrib.sessions.backends.signed_cookies"
    assert right == {
        "authenticated": True,
        "username": "dave",
        "user_class": "User",
        "session": signed,
    }
    assert wrong_name["session"] is None and wrong_name["authenticated"] is False
    assert forged["session"] == signed and forged["authenticated"] is False
