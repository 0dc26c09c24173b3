"""``make deploy`` / ``make undeploy``: the operator and the chat example on a cluster.

``python -m devtools.deploy up`` helm-installs charts/channelapp-operator, applies
examples/chat.yaml and waits until the ChannelApp is Ready; ``down`` removes both.

The cluster is ``$KUBECONFIG``'s, else the one ``make cluster`` started in this clone
(``.cluster/kubeconfig``), else kubectl's default. On the real node of
``make cluster NODE=real`` (its API server is the context's) the chart and the example
use the images that node holds (``localhost/channelapp/*``, never pulled) and the chat's
Service address, routed on this machine, is printed; elsewhere the chart's and the
example's images, and a ``kubectl port-forward`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from devtools.paths import REPO, STATE_DIR, bin_dir
from devtools.procs import alive

PROG = "python -m devtools.deploy"
CHART = REPO / "charts" / "channelapp-operator"
EXAMPLE = REPO / "examples" / "chat.yaml"
RELEASE = "channelapp-operator"
REALNODE_STATE = STATE_DIR / "realnode.json"
PLANE_STATE = STATE_DIR / "state.json"
LOCAL_KUBECONFIG = STATE_DIR / "kubeconfig"


class DeployError(RuntimeError):
    """A step failed; the message says which and what to look at."""


class Cluster:
    """kubectl and helm on one kubeconfig (``None``: kubectl's own default)."""

    def __init__(self, kubeconfig: Path | None, kubectl: str, helm: str) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_path = tool(kubectl)
        self.helm_path = tool(helm)
        self.env = dict(os.environ)
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)

    def run(
        self, argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv, env=self.env, input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise DeployError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run([self.kubectl_path, *args], **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run([self.helm_path, *args], **kw)

    def server(self) -> str:
        return self.kubectl(
            "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
        ).stdout.strip()


def tool(name: str) -> str:
    """A command on PATH, else the one ``make cluster-tools`` built."""
    found = shutil.which(name) or shutil.which(name, path=str(bin_dir()))
    if not found:
        raise DeployError(f"{name} is not on PATH (make cluster-tools builds it into {bin_dir()})")
    return found


def chosen_kubeconfig() -> Path | None:
    if os.environ.get("KUBECONFIG"):
        return None  # kubectl and helm read it themselves
    if LOCAL_KUBECONFIG.exists():
        return LOCAL_KUBECONFIG
    return None


def local_images(cluster: Cluster) -> dict[str, str] | None:
    """The images of ``make cluster NODE=real`` when the context is its API server."""
    if not REALNODE_STATE.exists():
        return None
    state = json.loads(REALNODE_STATE.read_text())
    if state["plane"]["server"] != cluster.server():
        return None
    return dict(state["images"])


def on_simulated_plane(cluster: Cluster) -> bool:
    """The context is ``make cluster``'s control plane without a real node (kwok's nodes
    run no container: the operator would never act)."""
    if not PLANE_STATE.exists() or REALNODE_STATE.exists():
        return False
    state = json.loads(PLANE_STATE.read_text())
    return bool(state["server"] == cluster.server() and alive(state["components"][0]["pid"]))


def split_ref(ref: str) -> tuple[str, str]:
    repo, tag = ref.rsplit(":", 1)
    return repo, tag


def install_chart(cluster: Cluster, namespace: str, images: dict[str, str] | None) -> None:
    args = [
        "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", namespace, "--create-namespace", "--wait", "--timeout", "300s",
    ]  # fmt: skip
    if images is not None:
        operator_repo, operator_tag = split_ref(images["operator"])
        runtime_repo, runtime_tag = split_ref(images["app"])
        args += [
            "--set", f"image.repository={operator_repo}",
            "--set-string", f"image.tag={operator_tag}",
            "--set", "image.pullPolicy=Never",
            "--set", f"runtimeImage.repository={runtime_repo}",
            "--set-string", f"runtimeImage.tag={runtime_tag}",
        ]  # fmt: skip
    print(f"helm upgrade --install {RELEASE} (namespace {namespace}) ...", flush=True)
    cluster.helm(*args, timeout=360)


def example(images: dict[str, str] | None) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    if images is not None:
        doc["spec"]["image"] = images["app"]
        doc["spec"]["imagePullPolicy"] = "Never"
        doc["spec"]["redis"]["managed"]["image"] = images["redis"]
    return doc


def conditions(app: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (app.get("status") or {}).get("conditions", [])}


def wait_ready(cluster: Cluster, name: str, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        got = cluster.kubectl("get", "channelapp", name, "-o", "json", check=False)
        if got.returncode == 0:
            seen = conditions(json.loads(got.stdout))
            if seen.get("Ready") == "True" and seen.get("Degraded") == "False":
                return seen
        time.sleep(2)
    pods = cluster.kubectl("get", "pods", "-o", "wide", check=False).stdout
    raise DeployError(
        f"ChannelApp {name} not Ready after {timeout:.0f}s (conditions {seen}); its pods:\n{pods}"
        + crash_logs(cluster, name)
    )


def crash_logs(cluster: Cluster, name: str) -> str:
    """The last lines of the app's containers that exited (a crash loop's why)."""
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-l", f"app.kubernetes.io/instance={name}", "-o", "json", check=False
        ).stdout
        or "{}"
    )
    out = ""
    for pod in pods.get("items", []):
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        if any(s.get("restartCount") for s in statuses):
            pod_name = pod["metadata"]["name"]
            log = cluster.kubectl("logs", pod_name, "--previous", "--tail=8", check=False)
            out += f"\nlast lines of {pod_name} before it exited:\n{log.stdout.rstrip()}\n"
            break  # one is enough: replicas crash alike
    return out


def reachable(url: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "readyz", timeout=5) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def cmd_up(args: argparse.Namespace) -> int:
    kubeconfig = chosen_kubeconfig()
    cluster = Cluster(kubeconfig, args.kubectl, args.helm)
    if kubeconfig is not None:
        print(f"cluster: {kubeconfig} (make cluster's)")
    if on_simulated_plane(cluster):
        raise DeployError(
            "the local control plane has no node that runs containers: "
            "make cluster-down && make cluster NODE=real"
        )
    images = local_images(cluster)
    if images is not None:
        print("images of the local node: " + ", ".join(images[k] for k in ("operator", "app")))
    started = time.monotonic()
    install_chart(cluster, args.namespace, images)
    doc = example(images)
    name = doc["metadata"]["name"]
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
    print(f"kubectl apply -f {EXAMPLE.relative_to(REPO)}; waiting for ChannelApp {name} ...")
    wait_ready(cluster, name, args.timeout)
    print(f"ChannelApp {name} Ready in {time.monotonic() - started:.0f}s:")
    print(cluster.kubectl("get", "channelapps", "-o", "wide").stdout.rstrip())
    svc = json.loads(cluster.kubectl("get", "service", name, "-o", "json").stdout)
    port = svc["spec"]["ports"][0]["port"]
    if kubeconfig is not None:
        print(f"export KUBECONFIG={kubeconfig}   # kubectl get channelapps, pods, ...")
    if images is not None:
        url = f"http://{svc['spec']['clusterIP']}:{port}/"
        if not reachable(url):
            raise DeployError(f"{url} does not answer from this machine (kube-proxy's rules?)")
        print(f"chat: {url}   (open it in two tabs; make undeploy removes it)")
    else:
        print(f"chat: kubectl port-forward service/{name} 8000:{port}, then http://127.0.0.1:8000/")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster = Cluster(chosen_kubeconfig(), args.kubectl, args.helm)
    # Foreground: the command returns once the app's pods are gone, not only its resource.
    cluster.kubectl(
        "delete", "--ignore-not-found", "--cascade=foreground", "-f", str(EXAMPLE), timeout=300
    )
    cluster.helm(
        "uninstall", RELEASE, "--namespace", args.namespace, "--ignore-not-found", "--wait"
    )
    print(f"removed the ChannelApp of {EXAMPLE.relative_to(REPO)} and the release {RELEASE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--namespace", default="channelapp-system", help="the operator's")
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--helm", default="helm")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="install the operator and the chat example, wait Ready")
    up.add_argument("--timeout", type=float, default=300, help="seconds for the app to be Ready")
    sub.add_parser("down", help="remove the chat example and the operator")
    args = parser.parse_args(argv)
    try:
        return {"up": cmd_up, "down": cmd_down}[args.command](args)
    except DeployError as e:
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
