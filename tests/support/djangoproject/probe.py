"""Django-side checks of the test project, run in a process of their own (Django's settings
are one per process): ``python -m tests.support.djangoproject.probe COMMAND ARG...`` prints
one JSON document.

    load SETTINGS                  the App channelapp builds from django:SETTINGS, its settings
    login USERNAME PASSWORD        a real logged-in session for the user (made if missing)
    expire SESSIONID               move the session's expiry into the past
    password USERNAME PASSWORD     change the user's password (its sessions' hash no longer match)
    users HEADERS_JSON             user_from_headers and session_from_headers of each header list

``DJANGOPROJECT_PROBE_SETTINGS`` names another settings module for all but ``load``.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import os
import sys
from typing import Any

SETTINGS = "tests.support.djangoproject.settings"


def _name(consumer: Any) -> str:
    from channelapp.consumers.asgi import AsgiMount

    if isinstance(consumer, AsgiMount):
        return type(consumer.application).__name__
    return str(getattr(consumer, "__name__", type(consumer).__name__))


def load(settings_module: str) -> dict[str, Any]:
    from channelapp.consumers.asgi import AsgiMount
    from channelapp.loading import load_app
    from channelapp.startup import settings_for

    app = load_app(f"django:{settings_module}")
    return {
        "routes": [
            {
                "pattern": r.pattern,
                "protocol": r.protocol,
                "mount": isinstance(r.consumer, AsgiMount),
                "consumer": _name(r.consumer),
            }
            for r in app.router.routes
        ],
        "settings": dataclasses.asdict(app.settings),
        # What protocol servers and workers run with: CHANNELAPP_* variables applied on top.
        "effective_settings": dataclasses.asdict(settings_for(app)),
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE"),
        "same_app_again": load_app(f"django:{settings_module}") is app,
    }


def _setup() -> None:
    """Django set up with the project (``DJANGOPROJECT_PROBE_SETTINGS``: another module)."""
    from channelapp.loading import load_app

    load_app(f"django:{os.environ.get('DJANGOPROJECT_PROBE_SETTINGS', SETTINGS)}")


def login(username: str, password: str) -> dict[str, Any]:
    _setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model, login
    from django.http import HttpRequest

    users = get_user_model()
    user = users.objects.filter(username=username).first() or users.objects.create_user(
        username, password=password
    )
    request = HttpRequest()
    request.session = importlib.import_module(settings.SESSION_ENGINE).SessionStore()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()
    return {"cookie": settings.SESSION_COOKIE_NAME, "sessionid": request.session.session_key}


def expire(sessionid: str) -> dict[str, Any]:
    _setup()
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    past = timezone.now() - datetime.timedelta(seconds=1)
    return {"expired": Session.objects.filter(session_key=sessionid).update(expire_date=past)}


def password(username: str, new: str) -> dict[str, Any]:
    _setup()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=username)
    user.set_password(new)
    user.save()
    return {"changed": username}


def _headers(pairs: list[list[Any]]) -> list[list[Any]]:
    """JSON cannot carry bytes: a pair written as {"bytes": [name, value]} is sent as bytes."""
    out: list[list[Any]] = []
    for pair in pairs:
        if isinstance(pair, dict):
            out.append([part.encode("latin-1") for part in pair["bytes"]])
        else:
            out.append(pair)
    return out


def users(header_sets: list[list[list[Any]]]) -> list[dict[str, Any]]:
    _setup()
    from channelapp.django import session_from_headers, user_from_headers

    results = []
    for pairs in header_sets:
        headers = _headers(pairs)
        user = user_from_headers(headers)
        session = session_from_headers(headers)
        results.append(
            {
                "authenticated": bool(user.is_authenticated),
                "username": user.get_username(),
                "user_class": type(user).__name__,
                "session": None if session is None else type(session).__module__,
            }
        )
    return results


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "users":
        result: Any = users(json.loads(args[0]))
    else:
        result = {"load": load, "login": login, "expire": expire, "password": password}[command](
            *args
        )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
