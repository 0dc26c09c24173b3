"""Load the app object named by ``MODULE:ATTR``, or a Django project by ``django:SETTINGS``."""

from __future__ import annotations

import importlib
from typing import Any

from channelapp.django.loader import load_django_app
from channelapp.errors import AppLoadError as AppLoadError  # importable from here too

DJANGO_PREFIX = "django:"


def load_app(path: str) -> Any:
    if path.startswith(DJANGO_PREFIX):
        return load_django_app(path[len(DJANGO_PREFIX) :])
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(
            f"app path must look like 'package.module:attribute' (or 'django:mysite.settings'), got {path!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r} (from {path!r}): {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not hasattr(obj, "settings"):
        raise AppLoadError(f"{path!r} is not a channelapp.App (it has no .settings)")
    return obj
