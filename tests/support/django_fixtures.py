"""The test Django project (tests/support/djangoproject) with a migrated SQLite database,
driven in processes of its own: ``manage`` runs ``python -m django``, ``probe`` runs
:mod:`tests.support.djangoproject.probe` (Django's settings are one per process, so the
test process never sets Django up itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DJANGO_SETTINGS = "tests.support.djangoproject.settings"
DJANGO_APP = f"django:{DJANGO_SETTINGS}"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password-for-tests"


def django_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without DJANGO_SETTINGS_MODULE, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(extra or {})
    return env


def run_python(
    argv: list[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        env=django_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class DjangoProject:
    db: Path
    settings: str = DJANGO_SETTINGS
    #: The variable the project's settings read the SQLite file's path from.
    db_variable: str = "DJANGOPROJECT_DB"
    #: Where the project's packages are, when not importable from the repository root.
    path: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """What every process of the project needs: the database file (and its packages)."""
        env = {self.db_variable: str(self.db)}
        if self.path is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.path), os.environ.get("PYTHONPATH", "")) if p
            )
        return env

    def manage(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        proc = run_python(
            ["-m", "django", *args],
            {**self.env, "DJANGO_SETTINGS_MODULE": self.settings, **(env or {})},
        )
        assert proc.returncode == 0, f"django-admin {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    def probe(self, *args: str, env: Mapping[str, str] | None = None) -> Any:
        proc = run_python(
            ["-m", "tests.support.djangoproject.probe", *args], {**self.env, **(env or {})}
        )
        assert proc.returncode == 0, f"probe {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> DjangoProject:
    """The project with a new SQLite database, migrated once per test session."""
    project = DjangoProject(tmp_path_factory.mktemp("djangoproject") / "db.sqlite3")
    project.manage("migrate", "--noinput")
    return project


@pytest.fixture(scope="session")
def django_admin(django_project: DjangoProject) -> tuple[str, str]:
    """A superuser made with ``createsuperuser``: (username, password)."""
    django_project.manage(
        "createsuperuser", "--noinput", "--username", ADMIN_USER, "--email", "admin@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
    )  # fmt: skip
    return ADMIN_USER, ADMIN_PASSWORD
