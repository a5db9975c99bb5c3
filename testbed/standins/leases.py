"""kube-apiserver's Lease API (coordination.k8s.io/v1), kept in etcd as the real one keeps it.

Copies: GET, POST (create) and PUT (update) of
/apis/coordination.k8s.io/v1/namespaces/<ns>/leases[/<name>] for any client whose certificate
the apiserver accepted (anonymous: 403, as RBAC answers). Objects live in etcd under
/registry/leases/<ns>/<name> (through etcd's JSON gRPC gateway, with the apiserver's etcd client
certificate); `metadata.resourceVersion` is the key's mod_revision and an update must carry the
current one (etcd txn compare), else 409 Conflict with upstream's message. A create of an
existing lease is 409 AlreadyExists; a missing one is 404 NotFound. etcd not answering -> 500
`etcdserver: request timed out`. Limits: JSON in etcd (the real one stores protobuf), no list,
watch, delete or field validation; every authenticated user may do all of it.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from . import tlsclient
from .paths import node_path

PATH = re.compile(
    r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/?]+)/leases(?:/([^/?]+))?/?(?:\?.*)?$"
)
GROUP = "coordination.k8s.io"
JSON = "application/json"


class StorageError(Exception):
    pass


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class EtcdKV:
    """The three key-value calls the Lease API needs, over etcd's /v3 JSON gateway."""

    def __init__(self, url: str, ca: str, cert: str, key: str, timeout: float = 3.0) -> None:
        self.url, self.ca, self.cert, self.key, self.timeout = url, ca, cert, key, timeout

    def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            status, body = tlsclient.request(
                "POST",
                self.url.rstrip("/") + path,
                node_path(self.ca).read_bytes(),
                str(node_path(self.cert)),
                str(node_path(self.key)),
                body=json.dumps(payload).encode(),
                timeout=self.timeout,
            )
        except (tlsclient.GoError, OSError) as e:
            raise StorageError(f"etcdserver: request timed out ({e})") from None
        if status != 200:
            raise StorageError(f"etcdserver: {body.decode(errors='replace').strip()[:200]}")
        data = json.loads(body or b"{}")
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> tuple[bytes, int] | None:
        data = self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")), int(kvs[0].get("mod_revision", 0))

    def put_if(self, key: str, value: bytes, mod_revision: int) -> int | None:
        """Put when the key's mod_revision is `mod_revision` (0: the key must not exist);
        the new revision, or None when the compare failed."""
        compare = {"key": _b64(key), "result": "EQUAL", "target": "MOD",
                   "mod_revision": str(mod_revision)}
        data = self._call("/v3/kv/txn", {
            "compare": [compare],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
        })
        if not data.get("succeeded"):  # proto3 JSON leaves a false out
            return None
        return int(data.get("header", {}).get("revision", 0))


def status(code: int, reason: str, message: str, name: str = "") -> tuple[int, str, str]:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason,
            "details": {"name": name, "group": GROUP, "kind": "leases"}, "code": code}
    return code, json.dumps(body), JSON


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def handle(kv: EtcdKV, method: str, path: str, body: bytes, user: str | None
           ) -> tuple[int, str, str] | None:
    m = PATH.match(path)
    if m is None:
        return None
    ns, name = m.group(1), m.group(2) or ""
    verb = {"GET": "get", "POST": "create", "PUT": "update"}.get(method, method.lower())
    if user is None:
        return status(403, "Forbidden", f'leases.{GROUP} "{name}" is forbidden: User '
                      f'"system:anonymous" cannot {verb} resource "leases" in API group "{GROUP}" '
                      f'in the namespace "{ns}"', name)
    route = {("GET", True): lambda: _get(kv, ns, name),
             ("POST", False): lambda: _create(kv, ns, body),
             ("PUT", True): lambda: _update(kv, ns, name, body)}.get((method, bool(name)))
    if route is None:
        return status(405, "MethodNotAllowed", "the server does not allow this method on the "
                      "requested resource", name)
    try:
        return route()
    except StorageError as e:
        return status(500, "InternalError", f"Internal error occurred: {e}", name)
    except (ValueError, KeyError, TypeError) as e:
        return status(400, "BadRequest", f"the body of the request was in an unknown format: {e}")


def _key(ns: str, name: str) -> str:
    return f"/registry/leases/{ns}/{name}"


def _get(kv: EtcdKV, ns: str, name: str) -> tuple[int, str, str]:
    got = kv.get(_key(ns, name))
    if got is None:
        return status(404, "NotFound", f'leases.{GROUP} "{name}" not found', name)
    obj = json.loads(got[0])
    obj["metadata"]["resourceVersion"] = str(got[1])
    return 200, json.dumps(obj), JSON


def _create(kv: EtcdKV, ns: str, body: bytes) -> tuple[int, str, str]:
    obj = json.loads(body)
    name = str(obj["metadata"]["name"])
    obj["metadata"].update({"namespace": ns, "uid": str(uuid.uuid4()),
                            "creationTimestamp": _now()})
    obj["metadata"].pop("resourceVersion", None)
    obj.update({"kind": "Lease", "apiVersion": f"{GROUP}/v1"})
    rev = kv.put_if(_key(ns, name), json.dumps(obj).encode(), 0)
    if rev is None:
        return status(409, "AlreadyExists", f'leases.{GROUP} "{name}" already exists', name)
    obj["metadata"]["resourceVersion"] = str(rev)
    return 201, json.dumps(obj), JSON


def _update(kv: EtcdKV, ns: str, name: str, body: bytes) -> tuple[int, str, str]:
    obj = json.loads(body)
    want = int(obj["metadata"].pop("resourceVersion", 0) or 0)
    current = kv.get(_key(ns, name))
    if current is None:
        return status(404, "NotFound", f'leases.{GROUP} "{name}" not found', name)
    conflict = status(409, "Conflict", f'Operation cannot be fulfilled on leases.{GROUP} '
                      f'"{name}": the object has been modified; please apply your changes to '
                      "the latest version and try again", name)
    if want != current[1]:
        return conflict
    old_meta = json.loads(current[0])["metadata"]
    obj["metadata"] = {**old_meta, **{k: v for k, v in obj["metadata"].items()
                                      if k in ("labels", "annotations")}}
    obj.update({"kind": "Lease", "apiVersion": f"{GROUP}/v1"})
    rev = kv.put_if(_key(ns, name), json.dumps(obj).encode(), want)
    if rev is None:
        return conflict
    obj["metadata"]["resourceVersion"] = str(rev)
    return 200, json.dumps(obj), JSON
