"""``django:SETTINGS`` apps: routes from CHANNELAPP_ROUTING (or a Channels 1.x ROUTING), then
Django's views; channelapp settings from the Django setting CHANNELAPP; one-line refusals.

Django's settings are one per process, so each check runs in a process of its own: the
loader through ``tests.support.djangoproject.probe``, refusals through ``python -m channelapp``.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from channelapp.django.loader import settings_from_django
from channelapp.loading import AppLoadError

from tests.support.django_fixtures import DJANGO_SETTINGS, DjangoProject, run_python

PROJECT = "tests.support.djangoproject"


def channelapp_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # No CHANNELAPP_REDIS_URLS: a worker whose app loads stops at "set CHANNELAPP_REDIS_URLS".
    return run_python(["-m", "channelapp", *args], {"CHANNELAPP_REDIS_URLS": "", **(env or {})})


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("channelapp")]


def test_routes_come_first_then_django_serves_every_other_http_path(
    django_project: DjangoProject,
) -> None:
    loaded = django_project.probe("load", DJANGO_SETTINGS)
    assert [(r["pattern"], r["protocol"], r["consumer"]) for r in loaded["routes"]] == [
        ("/ws/whoami/", "websocket", "WhoAmI"),
        ("/ws/whoami-async/", "websocket", "AsyncWhoAmI"),
        ("/orm/", "http", "orm"),
        ("/", "http", "ASGIHandler"),  # Django's get_asgi_application(), mounted last
    ]
    assert [r["mount"] for r in loaded["routes"]] == [False, False, False, True]
    assert loaded["DJANGO_SETTINGS_MODULE"] == DJANGO_SETTINGS
    assert loaded["same_app_again"] is True  # one App per process, as Django has one settings


def test_the_django_setting_channelapp_gives_the_apps_settings(
    django_project: DjangoProject,
) -> None:
    settings = django_project.probe("load", DJANGO_SETTINGS)["settings"]
    # settings.py: CHANNELAPP = {"max_frame_size": 65536, "allowed_origins": [...]}
    assert settings["max_frame_size"] == 65536
    assert settings["allowed_origins"] == ["http://allowed.example"]
    assert settings["max_body_size"] == 1024 * 1024  # the rest keep channelapp's defaults


def test_the_projects_allowed_hosts_apply_to_sockets(django_project: DjangoProject) -> None:
    settings = django_project.probe("load", DJANGO_SETTINGS)["settings"]
    assert settings["allowed_hosts"] == ["127.0.0.1", "localhost"]  # settings.py's ALLOWED_HOSTS


def test_allowed_hosts_come_from_django_unless_channelapp_names_them() -> None:
    assert settings_from_django(None, ["mysite.example"]).allowed_hosts == ["mysite.example"]
    both = settings_from_django({"allowed_hosts": ["a.example"]}, ["b.example"])
    assert both.allowed_hosts == ["a.example"]
    assert settings_from_django(None, []).allowed_hosts == []  # pages of this machine only
    with pytest.raises(AppLoadError, match="ALLOWED_HOSTS"):
        settings_from_django(None, "mysite.example")


def test_channelapp_variables_apply_on_top_of_the_django_setting(
    django_project: DjangoProject,
) -> None:
    loaded = django_project.probe(
        "load", DJANGO_SETTINGS, env={"CHANNELAPP_MAX_FRAME_SIZE": "1000"}
    )
    assert loaded["settings"]["max_frame_size"] == 65536  # CHANNELAPP in settings.py
    assert loaded["effective_settings"]["max_frame_size"] == 1000  # what the processes run
    assert loaded["effective_settings"]["allowed_origins"] == ["http://allowed.example"]


def test_a_channels_1_project_keeps_its_routing_and_its_backend_is_ignored_in_one_line(
    django_project: DjangoProject,
) -> None:
    loaded = django_project.probe("load", f"{PROJECT}.channels1_settings")
    assert [r["pattern"] for r in loaded["routes"]] == [
        "/ws/whoami/",
        "/ws/whoami-async/",
        "/orm/",
        "/",
    ]
    proc = channelapp_cli("worker", f"django:{PROJECT}.channels1_settings", env=django_project.env)
    ignored = [line for line in proc.stderr.splitlines() if "are ignored" in line]
    assert len(ignored) == 1, proc.stderr
    assert " INFO channelapp.django: " in ignored[0]
    assert "BACKEND 'asgi_redis.RedisChannelLayer' and CONFIG are ignored" in ignored[0]
    # Loaded: the worker goes on to its own checks, and stops at the missing Redis URL.
    assert proc.returncode == 2 and "CHANNELAPP_REDIS_URLS" in error_lines(proc)[-1]


def test_setting_the_same_django_settings_module_is_fine(django_project: DjangoProject) -> None:
    proc = channelapp_cli(
        "worker", f"django:{DJANGO_SETTINGS}",
        env={**django_project.env, "DJANGO_SETTINGS_MODULE": DJANGO_SETTINGS},
    )  # fmt: skip
    assert proc.returncode == 2 and "CHANNELAPP_REDIS_URLS" in error_lines(proc)[-1], proc.stderr


REFUSALS = {
    "no-module": ("django:", {}, "named by its settings module, as 'django:mysite.settings'"),
    "bad-module": ("django:1bad", {}, "got 'django:1bad'"),
    "not-importable": (
        "django:no_such_project.settings",
        {},
        "cannot import the Django settings module 'no_such_project.settings'",
    ),
    "settings-raise": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_RAISE": "boom"},
        f"the Django settings module '{PROJECT}.variant_settings' raised RuntimeError: boom",
    ),
    "setup-fails": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_INSTALLED_APPS": json.dumps(["no_such_django_app"])},
        f"django.setup() with '{PROJECT}.variant_settings' failed: ModuleNotFoundError: "
        "No module named 'no_such_django_app'",
    ),
    "other-settings-module": (
        f"django:{DJANGO_SETTINGS}",
        {"DJANGO_SETTINGS_MODULE": "mysite.settings"},
        f"DJANGO_SETTINGS_MODULE is 'mysite.settings', but the app is 'django:{DJANGO_SETTINGS}'",
    ),
    "routing-not-importable": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP_ROUTING": f"{PROJECT}.nowhere.routes"},
        f"CHANNELAPP_ROUTING = '{PROJECT}.nowhere.routes': cannot import '{PROJECT}.nowhere'",
    ),
    "routing-missing-attribute": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP_ROUTING": f"{PROJECT}.routing.missing"},
        f"module '{PROJECT}.routing' has no 'missing'",
    ),
    "routing-not-a-list": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP_ROUTING": f"{PROJECT}.routing.not_a_list"},
        "is a dict, not a list of channelapp routes",
    ),
    "routing-items-not-routes": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP_ROUTING": f"{PROJECT}.routing.not_routes"},
        "item 0 is a builtins.str, not a channelapp route",
    ),
    "routing-not-a-path": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP_ROUTING": "5"},
        "CHANNELAPP_ROUTING must be the dotted path of a list of routes",
    ),
    "channelapp-not-a-dict": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP": "[]"},
        "CHANNELAPP must be a dict of channelapp settings, got a list",
    ),
    "channelapp-unknown-key": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP": json.dumps({"REDIS_URLS": ["redis://r/0"]})},
        "CHANNELAPP['REDIS_URLS'] is not a channelapp setting (the keys are, in lower case: "
        "redis_urls, ",
    ),
    "channelapp-list-as-string": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP": json.dumps({"redis_urls": "redis://r/0"})},
        "CHANNELAPP['redis_urls'] must be a list of strings, got 'redis://r/0'",
    ),
    "channelapp-int-as-string": (
        f"django:{PROJECT}.variant_settings",
        {"DJANGOPROJECT_VARIANT_CHANNELAPP": json.dumps({"worker_concurrency": "8"})},
        "CHANNELAPP['worker_concurrency'] must be an integer, got '8'",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_project_that_cannot_load_is_refused_in_one_line(
    django_project: DjangoProject, case: str
) -> None:
    app, env, message = REFUSALS[case]
    proc = channelapp_cli("worker", app, env={**django_project.env, **env})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = error_lines(proc)
    assert line.startswith("channelapp: ") and message in line, proc.stderr


def test_without_django_installed_the_refusal_says_how_to_install_it() -> None:
    """A process where ``import django`` fails (``sys.modules["django"] = None``)."""
    code = (
        "import sys; sys.modules['django'] = None; from channelapp.cli import main; "
        f"sys.exit(main(['worker', 'django:{DJANGO_SETTINGS}']))"
    )
    proc = run_python(["-c", code], {})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"channelapp: 'django:{DJANGO_SETTINGS}' needs Django installed: "
        "pip install 'django>=4.2' (from a channelapp checkout: pip install -e '.[django]')"
    )


def test_channelapp_never_imports_django_by_itself() -> None:
    code = (
        "import sys, channelapp, channelapp.cli, channelapp.loading, channelapp.django, "
        "channelapp.django.auth, channelapp.django.loader, channelapp.worker.main, "
        "channelapp.server.protocol; print('django' in sys.modules)"
    )
    proc = run_python(["-c", code], {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
