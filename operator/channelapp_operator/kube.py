"""The few Kubernetes API calls the operator makes, over the official client.

The client is synchronous; async callers go through :func:`asyncio.to_thread`.
Server-side apply is a PATCH with ``application/apply-patch+yaml`` (JSON is
YAML), which the generic ``call_api`` sends for any kind.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from channelapp_operator import names as n
from channelapp_operator.ownership import controlled_by, refusal

# kind -> (API path prefix, plural)
_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Service": ("/api/v1", "services"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "Secret": ("/api/v1", "secrets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "Pod": ("/api/v1", "pods"),
    n.KIND: (f"/apis/{n.GROUP}/{n.VERSION}", n.PLURAL),
}


class SecretMissing(LookupError):
    """A password Secret, or its key, does not exist (not an authentication failure)."""


class SecretRefused(LookupError):
    """A Secret exists but the operator will not send its value to a Redis server."""


# Secret types whose values may be a Redis password. Others hold credentials for
# something else (a ServiceAccount's token, a registry login, TLS keys): sending
# them to a server named in a spec would hand them to whoever runs that server.
PASSWORD_SECRET_TYPES = frozenset({"", "Opaque", "kubernetes.io/basic-auth"})


# Characters a YAML parser refuses raw (not printable) or reads as a line break (folded
# inside a quoted string): these stay \u escapes, which YAML reads as JSON does.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def yaml_json(body: Any) -> bytes:
    """JSON for an ``application/apply-patch+yaml`` body, as UTF-8.

    ASCII JSON spells a character beyond the BMP (an emoji) as a surrogate pair of
    \\u escapes, which YAML reads as two invalid characters; UTF-8 keeps it whole.
    """
    text = json.dumps(body, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = _KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class Kube:
    # Calls refused with 403 by any instance: the permission check looks again soon.
    forbidden = 0

    def __init__(self, api: ApiClient | None = None) -> None:
        self.api = api or ApiClient()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
            if content_type == "application/apply-patch+yaml":
                body = yaml_json(body)
        params = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params)
        response.read()
        if response.status == 403:
            Kube.forbidden += 1
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason, body=response.data)
        return json.loads(response.data) if response.data else None

    def apply(
        self, manifest: dict[str, Any], *, manager: str = n.MANAGER, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply; with ``force`` the manager wins conflicts on the fields it lists.

        Only for objects the operator controls (see :meth:`apply_owned`).
        """
        meta = manifest["metadata"]
        return self._call(
            "PATCH",
            _path(manifest["kind"], meta["namespace"], meta["name"]),
            manifest,
            query=[("fieldManager", manager), ("force", "true" if force else "false")],
            content_type="application/apply-patch+yaml",
        )

    def apply_owned(self, manifest: dict[str, Any], uid: str) -> dict[str, Any]:
        """Apply a child only while it is absent or controlled by ``uid``.

        An absent child is created by a plain create, which fails with 409 when
        another writer created that name in the meantime; the object found then is
        checked like any existing one. An existing child (or the one just created)
        is applied with force and with its own UID in the manifest: were it deleted
        and re-created by someone else since the check, the API server refuses the
        changed UID. Anything not controlled by ``uid`` raises ChildExists.
        """
        kind = manifest["kind"]
        meta = manifest["metadata"]
        live = self.lookup(kind, meta["namespace"], meta["name"])
        created = False
        if live is None:
            live = self._create(manifest)
            created = live is not None
            if live is None:
                live = self.lookup(kind, meta["namespace"], meta["name"])
                if live is None:
                    raise ApiException(
                        status=409, reason=f"{kind}/{meta['name']} changed; retrying"
                    )
        if not controlled_by(live, uid):
            raise refusal(kind, live)
        pinned = {**manifest, "metadata": {**meta, "uid": live["metadata"]["uid"]}}
        applied = self.apply(pinned)
        if created:
            applied = self._drop_create_manager(kind, applied)
        return applied

    def _create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """POST the object; the created object, or None when the name exists (409)."""
        meta = manifest["metadata"]
        try:
            created: dict[str, Any] = self._call(
                "POST",
                _path(manifest["kind"], meta["namespace"]),
                manifest,
                query=[("fieldManager", n.CREATE_MANAGER)],
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        return created

    def _drop_create_manager(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Leave the fields set by the create to the apply alone.

        A create is an update operation: its manager would keep every field it set,
        so a field a later apply leaves out would stay. Once the apply owns them,
        the create's entry in managedFields is removed (guarded by the UID).
        """
        meta = obj["metadata"]
        managed = meta.get("managedFields") or []
        kept = [m for m in managed if m.get("manager") != n.CREATE_MANAGER]
        if len(kept) == len(managed) or not kept:
            return obj
        patch = [
            {"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
            {"op": "replace", "path": "/metadata/managedFields", "value": kept},
        ]
        answer: dict[str, Any] = self._call(
            "PATCH",
            _path(kind, meta["namespace"], meta["name"]),
            patch,
            query=[("fieldManager", n.MANAGER)],
            content_type="application/json-patch+json",
        )
        return answer

    def create_owned(self, manifest: dict[str, Any], uid: str) -> bool:
        """Create unless it exists; True when created. An existing object must be
        controlled by ``uid`` (else ChildExists)."""
        if self.create(manifest):
            return True
        meta = manifest["metadata"]
        live = self.lookup(manifest["kind"], meta["namespace"], meta["name"])
        if live is None:
            return self.create(manifest)
        if not controlled_by(live, uid):
            raise refusal(manifest["kind"], live)
        return False

    def delete_owned(self, kind: str, namespace: str, name: str, uid: str) -> bool:
        """Delete the object only if ``uid`` controls it; True when deleted.

        The delete carries the checked object's UID and resourceVersion as
        preconditions, so an object replaced or re-owned since the check stays.
        """
        live = self.lookup(kind, namespace, name)
        if live is None or not controlled_by(live, uid):
            return False
        meta = live["metadata"]
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
            "propagationPolicy": "Background",
        }
        try:
            self._call("DELETE", _path(kind, namespace, name), options)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None; read through a list by name where the operator may list
        the kind (its role grants list and watch, not get, on Services and StatefulSets)."""
        if kind == "Secret":
            return self.get(kind, namespace, name)
        found = self._call(
            "GET", _path(kind, namespace), query=[("fieldSelector", f"metadata.name={name}")]
        )
        items = list((found or {}).get("items") or [])
        if not items:
            return None
        obj: dict[str, Any] = items[0]
        api = _KINDS[kind][0].removeprefix("/apis/").removeprefix("/api/")
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", api)
        return obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def exists(self, path: str) -> bool:
        """Whether GET ``path`` finds an object (404: no; other errors raise)."""
        try:
            self._call("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, manifest: dict[str, Any]) -> bool:
        """Create unless it exists; True when created."""
        meta = manifest["metadata"]
        try:
            self._call("POST", _path(manifest["kind"], meta["namespace"]), manifest)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self._call("DELETE", _path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_labelled(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` matching the label ``selector``."""
        found = self._call("GET", _path(kind, namespace), query=[("labelSelector", selector)])
        return list((found or {}).get("items") or [])

    def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 20) -> str:
        """The last ``lines`` lines of a container's log (a finished pod's too)."""
        params = self.api.param_serialize(
            "GET",
            f"{_path('Pod', namespace, pod)}/log",
            query_params=[("container", container), ("tailLines", str(lines))],
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params)
        response.read()
        if response.status == 403:
            Kube.forbidden += 1
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason, body=response.data)
        data = response.data or b""
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    def events_for(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """Core Events about one object (the controllers' FailedCreate, for instance)."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        found = self._call(
            "GET", f"/api/v1/namespaces/{namespace}/events", query=[("fieldSelector", selector)]
        )
        return list((found or {}).get("items") or [])

    def secret_value(
        self, namespace: str, name: str, key: str, *, owner_uid: str | None = None
    ) -> str:
        """A Redis password from a Secret.

        :class:`SecretMissing` says whether the Secret or its key is absent;
        :class:`SecretRefused` that the Secret is of a type that holds another kind
        of credential, or (with ``owner_uid``) is not controlled by that owner.
        """
        secret = self.get("Secret", namespace, name)
        if secret is None:
            raise SecretMissing(f"secret {namespace}/{name} not found")
        kind = str(secret.get("type") or "")
        if kind not in PASSWORD_SECRET_TYPES:
            raise SecretRefused(
                f"secret {namespace}/{name} is of type {kind}, not a password Secret "
                f"(Opaque or kubernetes.io/basic-auth): its value is not sent to Redis"
            )
        if owner_uid is not None and not controlled_by(secret, owner_uid):
            raise SecretRefused(f"{refusal('Secret', secret)}")
        raw = (secret.get("data") or {}).get(key)
        if raw is None:
            raise SecretMissing(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(raw).decode()

    def scale_workers(self, namespace: str, name: str, replicas: int) -> None:
        """Set the worker Deployment's replicas as the autoscaler's field manager."""
        self.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas},
            },
            manager=n.SCALER_MANAGER,
        )

    def access_review(self, review: dict[str, Any]) -> dict[str, Any]:
        """Create a SelfSubjectAccessReview; the answer has ``status.allowed``."""
        answer: dict[str, Any] = self._call(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review
        )
        return answer

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._call(
            "PATCH",
            f"/apis/{n.GROUP}/{n.VERSION}/namespaces/{namespace}/{n.PLURAL}/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
