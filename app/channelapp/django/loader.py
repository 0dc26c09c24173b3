"""``django:mysite.settings``: a Django project as a channelapp App.

The App's routes are the project's channelapp routes, then Django itself::

    [*CHANNELAPP_ROUTING, mount("/", get_asgi_application())]

so every HTTP path no route claims is served by Django's views (the admin too).
``CHANNELAPP_ROUTING`` is a dotted path to a list of routes; a project ported from
Channels 1.x may keep ``CHANNEL_LAYERS["default"]["ROUTING"]`` instead (its BACKEND and
CONFIG are ignored: channelapp's own layer carries the channels). The App's settings
come from the Django setting ``CHANNELAPP`` (a dict keyed by the lower-case field names
of :class:`channelapp.settings.Settings`); ``CHANNELAPP_*`` variables still apply on top.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from typing import Any

from channelapp.application import App
from channelapp.errors import AppLoadError
from channelapp.routing import Route, mount
from channelapp.settings import Settings

log = logging.getLogger("channelapp.django")

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# Django's settings are one per process: so is the App built from them.
_apps: dict[str, App] = {}


def load_django_app(settings_module: str) -> App:
    """The App of the Django project whose settings module is ``settings_module``."""
    if not _MODULE.fullmatch(settings_module):
        raise AppLoadError(
            "a Django app is named by its settings module, as 'django:mysite.settings', "
            f"got 'django:{settings_module}'"
        )
    if settings_module in _apps:
        return _apps[settings_module]
    current = os.environ.get("DJANGO_SETTINGS_MODULE")
    if current and current != settings_module:
        raise AppLoadError(
            f"DJANGO_SETTINGS_MODULE is {current!r}, but the app is 'django:{settings_module}': "
            "unset the variable or name the same module"
        )
    try:
        import django
    except ImportError:
        raise AppLoadError(
            f"'django:{settings_module}' needs Django installed: pip install 'django>=4.2' "
            "(from a channelapp checkout: pip install -e '.[django]')"
        ) from None
    try:
        importlib.import_module(settings_module)
    except ImportError as exc:
        raise AppLoadError(
            f"cannot import the Django settings module {settings_module!r}: {exc}"
        ) from None
    except Exception as exc:  # the settings module itself raised
        raise AppLoadError(
            f"the Django settings module {settings_module!r} raised {type(exc).__name__}: {exc}"
        ) from None
    from django.conf import settings

    if settings.configured and settings.SETTINGS_MODULE != settings_module:
        raise AppLoadError(
            f"Django is already configured with {settings.SETTINGS_MODULE!r} in this process, "
            f"not {settings_module!r}"
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        django.setup()
    except Exception as exc:  # ImproperlyConfigured, an installed app that fails to import
        raise AppLoadError(
            f"django.setup() with {settings_module!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    routes = _routes(settings)
    app_settings = settings_from_django(
        getattr(settings, "CHANNELAPP", None), getattr(settings, "ALLOWED_HOSTS", None)
    )

    from django.core.asgi import get_asgi_application

    app = App([*routes, mount("/", get_asgi_application())], settings=app_settings)
    _apps[settings_module] = app
    return app


def _routes(settings: Any) -> list[Route]:
    """The routes named by CHANNELAPP_ROUTING, else by Channels 1.x's CHANNEL_LAYERS ROUTING."""
    dotted = getattr(settings, "CHANNELAPP_ROUTING", None)
    where = "CHANNELAPP_ROUTING"
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    default = layers.get("default") if isinstance(layers, dict) else None
    if isinstance(default, dict):
        also = ""
        if dotted is None and default.get("ROUTING") is not None:
            dotted, where = default["ROUTING"], "CHANNEL_LAYERS['default']['ROUTING']"
        elif default.get("ROUTING") is not None:
            also = "; its ROUTING too (CHANNELAPP_ROUTING is used)"
        log.info(
            "CHANNEL_LAYERS['default']: BACKEND %r and CONFIG are ignored, channelapp's own "
            "channel layer (CHANNELAPP_REDIS_URLS) replaces them%s",
            default.get("BACKEND"),
            also,
        )
    if dotted is None:
        log.info("no CHANNELAPP_ROUTING: Django's views serve every HTTP path")
        return []
    if not isinstance(dotted, str) or not _MODULE.fullmatch(dotted) or "." not in dotted:
        raise AppLoadError(
            f"{where} must be the dotted path of a list of routes, as 'mysite.routing.routes', "
            f"got {dotted!r:.100}"
        )
    module_name, _, attr = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"{where} = {dotted!r}: cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attr):
        raise AppLoadError(f"{where} = {dotted!r}: module {module_name!r} has no {attr!r}")
    found = getattr(module, attr)
    if not isinstance(found, list | tuple):
        raise AppLoadError(
            f"{where} = {dotted!r} is a {type(found).__name__}, not a list of channelapp routes"
        )
    for i, route in enumerate(found):
        if not isinstance(route, Route):
            kind = f"{type(route).__module__}.{type(route).__qualname__}"
            raise AppLoadError(
                f"{where} = {dotted!r}: item {i} is a {kind}, not a channelapp route "
                "(channelapp.routing.path or channel)"
            )
    return list(found)


def settings_from_django(conf: Any, allowed_hosts: Any = None) -> Settings:
    """channelapp Settings from the Django setting CHANNELAPP (field names, lower case).

    The project's ALLOWED_HOSTS applies to sockets as to its views (the Host header, and
    the pages that may open WebSockets), unless CHANNELAPP names ``allowed_hosts`` itself.
    """
    try:
        settings = Settings.from_mapping(conf, "CHANNELAPP")
    except ValueError as exc:
        raise AppLoadError(str(exc)) from None
    named = isinstance(conf, dict) and "allowed_hosts" in conf
    if not named and allowed_hosts:
        if not isinstance(allowed_hosts, list | tuple) or not all(
            isinstance(h, str) for h in allowed_hosts
        ):
            raise AppLoadError(
                f"ALLOWED_HOSTS must be a list of strings, got {allowed_hosts!r:.100}"
            )
        settings.allowed_hosts = list(allowed_hosts)
    return settings
