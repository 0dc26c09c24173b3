"""examples/django.yaml on real pods: the chatsite Django project (its image built from
examples/django/Dockerfile) with a PostgreSQL pod for its database. Migrated the way the
manifest says (``kubectl exec deploy/chatsite-worker -- python manage.py migrate``), then
used from the host through the protocol Service as a browser would: Django's login form
with CSRF, the @login_required page, and two users chatting over sockets authenticated by
their Django session cookies; an anonymous socket is refused with 4003."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yaml

from devtools.kube import KubeCluster
from devtools.realnode.bringup import RealCluster
from devtools.realnode.workloads import (
    ROOT,
    apply_and_wait_ready,
    channelapp,
    default_service_account,
)
from tests.support.chatsite import USERS, log_in

pytestmark = [pytest.mark.realnode, pytest.mark.cluster]

NAMESPACE = "chatsite"


def postgres(image: str) -> list[dict[str, Any]]:
    labels = {"app": "postgres"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "postgres", "namespace": NAMESPACE},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "postgres",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "ports": [{"containerPort": 5432}],
                                "readinessProbe": {
                                    "tcpSocket": {"port": 5432},
                                    "periodSeconds": 1,
                                },
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "postgres", "namespace": NAMESPACE},
            "spec": {"selector": labels, "ports": [{"port": 5432}]},
        },
    ]


def manifest(cluster: RealCluster) -> tuple[dict[str, Any], dict[str, Any]]:
    """examples/django.yaml with the test images and the test database."""
    secret, app = yaml.safe_load_all((ROOT / "examples" / "django.yaml").read_text())
    spec = app["spec"]
    spec["image"] = cluster.image("django")
    spec["imagePullPolicy"] = "Never"
    spec["redis"]["managed"]["image"] = cluster.image("redis")
    env = {e["name"]: e for e in spec["env"]}
    env["POSTGRES_HOST"]["value"] = f"postgres.{NAMESPACE}.svc"
    env["DJANGO_ALLOWED_HOSTS"]["value"] = "*"  # the test reaches the Service by its IP
    spec["env"] = [*env.values(), {"name": "POSTGRES_USER", "value": "postgres"}]
    spec["env"].append({"name": "POSTGRES_DB", "value": "postgres"})
    return secret, app


def exec_worker(kube: KubeCluster, *command: str) -> str:
    return kube.kubectl(
        "exec", "-n", NAMESPACE, "deploy/chatsite-worker", "--", *command, timeout=180
    ).stdout


@pytest.fixture(scope="module")
def chatsite(real_cluster: RealCluster, real_operator: KubeCluster) -> Iterator[str]:
    kube = real_cluster.kube
    kube.kubectl("create", "namespace", NAMESPACE)
    default_service_account(kube, NAMESPACE)
    try:
        docs = postgres(real_cluster.image("postgres"))
        kube.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}),
        )
        kube.kubectl(
            "rollout", "status", "-n", NAMESPACE, "deploy/postgres", "--timeout=180s", timeout=200
        )
        secret, app = manifest(real_cluster)
        kube.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(secret))
        seconds = apply_and_wait_ready(real_cluster, NAMESPACE, app)
        print(f"\nchatsite Ready on real pods in {seconds:.1f}s")
        print(exec_worker(kube, "python", "manage.py", "migrate", "--noinput")[-300:])
        for username, password in USERS.items():
            exec_worker(
                kube, "python", "manage.py", "shell", "-c",
                "from django.contrib.auth.models import User; "
                f"User.objects.create_user({username!r}, password={password!r})",
            )  # fmt: skip
        svc = kube.kubectl_json("get", "service", "chatsite", "-n", NAMESPACE)
        yield f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    finally:
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_a_login_without_csrf_is_refused(chatsite: str) -> None:
    async def go() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{chatsite}/accounts/login/", data={"username": "ann", "password": USERS["ann"]}
            ) as r:
                return r.status

    assert asyncio.run(go()) == 403


def test_two_logged_in_users_chat_and_anonymous_is_refused(
    real_cluster: RealCluster, chatsite: str
) -> None:
    async def go() -> None:
        sockets = []
        for username in USERS:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                sessionid = await log_in(http, chatsite, username)
            sockets.append((username, sessionid))
        async with aiohttp.ClientSession() as http:
            ann, bob = [
                await http.ws_connect(
                    f"{chatsite}/ws/chat/lobby/",
                    headers={"Cookie": f"sessionid={sid}", "Origin": chatsite},
                )
                for _, sid in sockets
            ]
            await asyncio.sleep(0.5)  # both joined the room
            await ann.send_json({"text": "hello from a real pod"})
            for ws in (ann, bob):
                got = await asyncio.wait_for(ws.receive_json(), 15)
                assert got == {"message": "ann: hello from a real pod"}
            anonymous = await http.ws_connect(
                f"{chatsite}/ws/chat/lobby/", headers={"Origin": chatsite}
            )
            closed = await asyncio.wait_for(anonymous.receive(), 15)
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4003, closed
            forged = await http.ws_connect(
                f"{chatsite}/ws/chat/lobby/",
                headers={"Cookie": "sessionid=forged0000000000000000000000000", "Origin": chatsite},
            )
            closed = await asyncio.wait_for(forged.receive(), 15)
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4003, closed
            for ws in (ann, bob):
                await ws.close()

    asyncio.run(go())
    app = channelapp(real_cluster.kube, NAMESPACE, "chatsite")
    assert app["spec"]["app"] == "django:chatsite.settings"
