"""spec.migrate on real pods: examples/django.yaml (the chatsite Django project, PostgreSQL
in a pod) migrated by the operator's Job before its workers start; a new image adding a
model is migrated by its own Job before the new workers serve; a broken migration leaves
the old workers serving and the app Degraded (MigrationFailed) with the last line of the
Job's log.

The two later images are built here FROM the test build of the chatsite image (podman)
and imported into the node's containerd."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.kube import KubeCluster
from devtools.polling import wait_for
from devtools.realnode.bringup import RealCluster
from devtools.realnode.common import ctr
from devtools.realnode.workloads import ROOT, apply_and_wait_ready, channelapp
from tests.realnode.test_real_django import manifest, postgres

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.timeout(1800)]

MIGRATING_NAMESPACE = "chatsite-migrate"

MODELS = """
from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=200)
"""
INITIAL = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True)),
                ("text", models.CharField(max_length=200)),
            ],
        ),
    ]
"""
BROKEN = """
from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("notes 0002 cannot run: the column is missing")


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.RunPython(fail)]
"""


def build_image(base: str, tag: str, migrations: dict[str, str], work: Path) -> str:
    """The chatsite image plus a ``notes`` app with ``migrations``, imported into the node."""
    context = work / tag
    (context / "notes" / "migrations").mkdir(parents=True)
    (context / "notes" / "__init__.py").write_text("")
    (context / "notes" / "models.py").write_text(MODELS)
    (context / "notes" / "migrations" / "__init__.py").write_text("")
    for name, text in migrations.items():
        (context / "notes" / "migrations" / f"{name}.py").write_text(text)
    (context / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base}
        USER 0
        COPY notes /srv/chatsite/notes
        RUN printf '\\nINSTALLED_APPS += ["notes"]\\n' >> /srv/chatsite/chatsite/settings.py
        USER 10001:10001
    """))  # fmt: skip
    ref = f"localhost/channelapp-test/chatsite-notes:{tag}"
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "hack" / "images" / "containers.conf")}
    subprocess.run(["podman", "build", "--quiet", "--pull=never", "--network=host",
                    "-t", ref, str(context)], check=True,
                   env=env, capture_output=True, timeout=600)  # fmt: skip
    archive = work / f"{tag}.tar"
    subprocess.run(["podman", "save", "--quiet", "--format", "docker-archive", "-o",
                    str(archive), ref], check=True, env=env, timeout=600)  # fmt: skip
    ctr("images", "import", str(archive), timeout=300)
    return ref


def condition(app: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (app.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def worker_image(kube: KubeCluster) -> str:
    worker = kube.kubectl_json("get", "deployment", "chatsite-worker", "-n", MIGRATING_NAMESPACE)
    return str(worker["spec"]["template"]["spec"]["containers"][0]["image"])


def jobs(kube: KubeCluster) -> list[dict[str, Any]]:
    return list(
        kube.kubectl_json(
            "get", "jobs", "-n", MIGRATING_NAMESPACE, "-l", "app.kubernetes.io/component=migrate"
        )["items"]
    )


def job_of(kube: KubeCluster, image: str) -> dict[str, Any] | None:
    for job in jobs(kube):
        if job["spec"]["template"]["spec"]["containers"][0]["image"] == image:
            return job
    return None


def exec_worker(kube: KubeCluster, image: str, code: str) -> str:
    """Run Django shell ``code`` in a running, not terminating, worker pod of ``image``; its
    last line of output (Django 5.2's shell first says what it imported automatically)."""
    pods = kube.kubectl_json(
        "get", "pods", "-n", MIGRATING_NAMESPACE, "-l",
        "app.kubernetes.io/instance=chatsite,app.kubernetes.io/component=worker",
    )["items"]  # fmt: skip
    (pod, *_) = [
        p for p in pods
        if p["spec"]["containers"][0]["image"] == image
        and p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
    ]  # fmt: skip
    return kube.kubectl(
        "exec", "-n", MIGRATING_NAMESPACE, pod["metadata"]["name"], "--",
        "python", "manage.py", "shell", "-c", code, timeout=180,
    ).stdout.strip().splitlines()[-1]  # fmt: skip


def set_image(kube: KubeCluster, image: str) -> None:
    kube.kubectl("patch", "channelapp", "chatsite", "-n", MIGRATING_NAMESPACE, "--type=merge",
                 "-p", json.dumps({"spec": {"image": image}}))  # fmt: skip


def login_page(url: str) -> int:
    async def go() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/accounts/login/") as r:
                return r.status

    return asyncio.run(go())


def diagnose(kube: KubeCluster) -> str:
    """The app's status, its Jobs, pods and the migration pods' logs (for a failure)."""
    ns = MIGRATING_NAMESPACE
    out = [
        json.dumps((channelapp(kube, ns, "chatsite").get("status") or {}), indent=1),
        kube.kubectl("get", "jobs,pods", "-n", ns, "-o", "wide", check=False).stdout,
    ]
    pods = kube.kubectl_json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=migrate")
    for pod in pods["items"]:
        name = pod["metadata"]["name"]
        out.append(kube.kubectl("logs", "-n", ns, name, "--tail=20", check=False).stdout)
    return "\n".join(out)


@pytest.fixture(scope="module")
def chatsite(real_cluster: RealCluster, real_operator: KubeCluster) -> Iterator[str]:
    """examples/django.yaml (with its spec.migrate) in its own namespace, with PostgreSQL."""
    kube = real_cluster.kube
    kube.kubectl("create", "namespace", MIGRATING_NAMESPACE)
    try:
        docs = postgres(real_cluster.image("postgres"))
        for doc in docs:
            doc["metadata"]["namespace"] = MIGRATING_NAMESPACE
        kube.kubectl("apply", "-f", "-",
                     input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}))  # fmt: skip
        kube.kubectl("rollout", "status", "-n", MIGRATING_NAMESPACE, "deploy/postgres",
                     "--timeout=180s", timeout=200)  # fmt: skip
        secret, app = manifest(real_cluster)
        for env in app["spec"]["env"]:
            if env["name"] == "POSTGRES_HOST":
                env["value"] = f"postgres.{MIGRATING_NAMESPACE}.svc"
        assert app["spec"]["migrate"] == ["python", "manage.py", "migrate", "--noinput"]
        kube.kubectl("apply", "-n", MIGRATING_NAMESPACE, "-f", "-", input=json.dumps(secret))
        try:
            seconds = apply_and_wait_ready(real_cluster, MIGRATING_NAMESPACE, app, timeout=480)
        except AssertionError:
            print(diagnose(kube))
            raise
        print(f"\nchatsite migrated and Ready on real pods in {seconds:.1f}s")
        svc = kube.kubectl_json("get", "service", "chatsite", "-n", MIGRATING_NAMESPACE)
        yield f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    finally:
        kube.kubectl("delete", "namespace", MIGRATING_NAMESPACE, "--wait=false", check=False)


def test_the_job_migrates_before_the_workers_and_a_broken_one_keeps_them(
    real_cluster: RealCluster, chatsite: str, tmp_path: Path
) -> None:
    kube = real_cluster.kube
    first = real_cluster.image("django")

    # The first rollout: the Job of the example's image migrated the database before the
    # worker Deployment existed; the workers find Django's tables there.
    (job,) = jobs(kube)
    worker = kube.kubectl_json("get", "deployment", "chatsite-worker", "-n", MIGRATING_NAMESPACE)
    assert job["status"]["completionTime"] <= worker["metadata"]["creationTimestamp"]
    users = "from django.contrib.auth.models import User; print(User.objects.count())"
    assert exec_worker(kube, first, users) == "0"
    assert login_page(chatsite) == 200

    # A model change: the new image's Job creates its table before a worker of it starts.
    notes = build_image(first, "notes", {"0001_initial": INITIAL}, tmp_path)
    set_image(kube, notes)
    wait_for(lambda: job_of(kube, notes), 60, 1, what="the notes image's Job")
    wait_for(lambda: worker_image(kube) == notes, 240, 1, what="workers of the notes image")
    job = job_of(kube, notes)
    assert job is not None and job["status"].get("succeeded") == 1
    replica_sets = kube.kubectl_json(
        "get", "replicasets", "-n", MIGRATING_NAMESPACE, "-l",
        "app.kubernetes.io/instance=chatsite,app.kubernetes.io/component=worker",
    )["items"]  # fmt: skip
    (new_rs,) = [
        rs for rs in replica_sets
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == notes
    ]  # fmt: skip
    # The workers of the new image were created after its migration completed.
    assert job["status"]["completionTime"] <= new_rs["metadata"]["creationTimestamp"]
    kube.kubectl("rollout", "status", "-n", MIGRATING_NAMESPACE, "deploy/chatsite-worker",
                 "--timeout=240s", timeout=260)  # fmt: skip
    create = (
        "from notes.models import Note; Note.objects.create(text='hi'); print(Note.objects.count())"
    )
    assert exec_worker(kube, notes, create) == "1"
    # The first image's Job was deleted once this one succeeded.
    wait_for(lambda: [j["metadata"]["name"] for j in jobs(kube)] == [job["metadata"]["name"]],
             60, 1, what="older Jobs deleted")  # fmt: skip

    # A broken migration: the Job fails, the notes workers go on serving.
    broken = build_image(first, "broken", {"0001_initial": INITIAL, "0002_broken": BROKEN},
                         tmp_path)  # fmt: skip
    set_image(kube, broken)

    def degraded() -> dict[str, Any] | None:
        app = channelapp(kube, MIGRATING_NAMESPACE, "chatsite")
        return app if condition(app, "Degraded").get("reason") == "MigrationFailed" else None

    try:
        app = wait_for(degraded, 300, 1, what="Degraded=MigrationFailed")
    except AssertionError:
        print(diagnose(kube))
        raise
    message = condition(app, "Degraded")["message"]
    assert message.endswith("RuntimeError: notes 0002 cannot run: the column is missing"), message
    assert condition(app, "Degraded")["status"] == "True"
    assert condition(app, "Progressing")["reason"] == "MigrationFailed"
    assert worker_image(kube) == notes
    time.sleep(5)
    assert worker_image(kube) == notes
    assert login_page(chatsite) == 200  # the old workers serve Django's views
    assert (
        exec_worker(kube, notes, "from notes.models import Note; print(Note.objects.count())")
        == "1"
    )
    events = kube.kubectl_json(
        "get", "events", "-n", MIGRATING_NAMESPACE, "--field-selector",
        "involvedObject.name=chatsite,reason=MigrationFailed",
    )["items"]  # fmt: skip
    assert len(events) == 1 and events[0]["type"] == "Warning"
    assert "the column is missing" in events[0]["message"]
