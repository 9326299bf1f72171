"""An in-memory API server behind the operator's own client, for handler tests without a cluster.

`FakeKube` is a `Kube` whose requests never leave the process. The client's own logic runs
unchanged on top of `request` (adoption on "already exists" and OwnedByAnotherError, the merge
patch a status write sends, Events), and `request` answers as the API server does where the
operator depends on it:

- objects are dicts; a write that changes an object gives it the next resourceVersion (one
  counter for every object, as etcd's); a write that changes nothing keeps it, as the API server
  does;
- creation sets uid, creationTimestamp and (for kinds with a status subresource) generation 1,
  and drops the status; an existing name answers 409, which the client adopts or refuses;
- a JSON merge patch (RFC 7386) or a replace carrying metadata.resourceVersion is conditional:
  ConflictError when the object changed since; on `/status` only the status changes, on the
  object itself the status does not (for kinds with a status subresource); generation grows when
  anything outside metadata and status changes;
- deleting an object with finalizers sets its deletionTimestamp (and bumps its generation); it
  goes when its last finalizer is removed, and no finalizer may be added meanwhile;
- immutable ConfigMaps and Secrets refuse changes to their data;
- a missing object is a GoneError (a GET of one answers None, as the client does).

Nothing is garbage collected and no Job runs: tests move Pods and Jobs along themselves
(`start_pod`, `finish_job`), as the kubelet and the Job controller would.

Every request is recorded (verb, path, body), and so is every Event. `fail_next` makes the next
matching request fail; `before_next` runs another writer's change just before it is served, so a
conditional write meets a real conflict.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from goldenimage.api import labels
from goldenimage.api.errors import ConflictError, GoneError
from goldenimage.api.result import Result, encode
from goldenimage.config import Config
from goldenimage.handlers import goldenimages, imagebuilds, imagechannels, indexes
from goldenimage.handlers.cache import IndexedCache
from goldenimage.handlers.context import GOLDENIMAGE, IMAGEBUILD, IMAGECHANNEL, Operator
from goldenimage.kube.client import (
    CONFIGMAPS,
    EVENTS,
    GOLDENIMAGES,
    IMAGEBUILDS,
    IMAGECHANNELS,
    JOBS,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    Kind,
    Kube,
)
from goldenimage.kube.credentials import CloudAccess

Obj = dict[str, Any]

KINDS: tuple[Kind, ...] = (
    GOLDENIMAGES,
    IMAGEBUILDS,
    IMAGECHANNELS,
    JOBS,
    PODS,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    EVENTS,
)
# Kinds whose status is written only through `/status`.
WITH_STATUS = frozenset({GOLDENIMAGES, IMAGEBUILDS, IMAGECHANNELS, JOBS, PODS})
# Metadata only the API server sets.
SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "name", "generation", "resourceVersion")


def api_version(kind: Kind) -> str:
    return f"{kind.group}/{kind.version}" if kind.group else kind.version


def kind_of(obj: Mapping[str, Any]) -> Kind:
    found = next((k for k in KINDS if (api_version(k), k.kind) == (obj.get("apiVersion"), obj.get("kind"))), None)
    if found is None:
        raise ValueError(f"the fake API server does not serve {obj.get('apiVersion')} {obj.get('kind')}")
    return found


def timestamp(moment: datetime | None = None) -> str:
    """A time as the API server writes metadata times: seconds, UTC."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: null removes a key, objects merge, everything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def selects(selector: str, object_labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if object_labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if object_labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in object_labels:
                return False
        elif term not in object_labels:
            return False
    return True


@dataclass(frozen=True)
class Request:
    verb: str
    path: str
    body: Any = None
    query: tuple[tuple[str, str], ...] = ()


@dataclass
class _Injection:
    verb: str
    path: str  # an fnmatch pattern
    error: BaseException | None = None
    before: Callable[[], object] | None = None

    def matches(self, verb: str, path: str) -> bool:
        return verb == self.verb and fnmatch.fnmatchcase(path, self.path)


class _StatusError(Exception):
    """An API server answer other than success."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class _Target:
    kind: Kind
    namespace: str
    name: str | None
    subresource: str | None


def _parse(path: str) -> _Target:
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _StatusError(404, f"no such path {path}")
    if len(rest) < 3 or rest[0] != "namespaces":
        raise _StatusError(404, f"only namespaced paths are served: {path}")
    namespace, plural, tail = rest[1], rest[2], rest[3:]
    kind = next((k for k in KINDS if (k.group, k.version, k.plural) == (group, version, plural)), None)
    if kind is None:
        raise _StatusError(404, f"no such resource {path}")
    return _Target(kind, namespace, tail[0] if tail else None, tail[1] if len(tail) > 1 else None)


class FakeKube(Kube):
    def __init__(self, *, component: str = "goldenimage-operator") -> None:
        # No ApiClient and no threads: `request` is answered here.
        self.component = component
        self._store: dict[Kind, dict[tuple[str, str], Obj]] = {k: {} for k in KINDS}
        self._versions = itertools.count(1)
        self._injections: list[_Injection] = []
        self.requests: list[Request] = []

    # -- what tests arrange ------------------------------------------------------------------

    def put(self, obj: Mapping[str, Any], namespace: str | None = None) -> Obj:
        """Store an object as a user's `kubectl apply` would (not recorded as the operator's
        request); metadata the server owns is filled in, a status given is kept."""
        body = copy.deepcopy(dict(obj))
        kind = kind_of(body)
        meta = body.setdefault("metadata", {})
        meta["namespace"] = namespace or meta.get("namespace") or "default"
        existing = self._store[kind].get((meta["namespace"], meta["name"]))
        if existing is not None:
            for key in ("uid", "creationTimestamp"):
                meta[key] = existing["metadata"][key]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", timestamp())
        if kind in WITH_STATUS:
            meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_version()
        self._store[kind][(meta["namespace"], meta["name"])] = body
        return copy.deepcopy(body)

    def change(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        """Another writer's merge patch (a user, a controller, the kubelet), status included;
        not recorded as the operator's request."""
        old = self._require(kind, namespace, name)
        new = merge_patch(old, dict(patch))
        for key in SERVER_OWNED:
            if key in old["metadata"]:
                new["metadata"][key] = old["metadata"][key]
        return copy.deepcopy(self._commit(kind, old, new))

    def delete_externally(self, kind: Kind, namespace: str, name: str) -> None:
        """A user's `kubectl delete`: with finalizers, the object stays, being deleted."""
        self._delete(kind, namespace, name)

    def remove(self, kind: Kind, namespace: str, name: str) -> None:
        """The object is gone at once, finalizers or not (the garbage collector, a Pod that went)."""
        self._store[kind].pop((namespace, name), None)

    def fail_next(self, verb: str, path: str, error: BaseException) -> None:
        """The next request of `verb` to a path matching `path` (fnmatch) fails with `error`; an
        ApiException is translated as the client translates the API server's answers."""
        self._injections.append(_Injection(verb, path, error=error))

    def before_next(self, verb: str, path: str, action: Callable[[], object]) -> None:
        """Run `action` (say, another writer's `change`) just before the next matching request
        is served."""
        self._injections.append(_Injection(verb, path, before=action))

    # -- what tests look at -------------------------------------------------------------------

    def stored(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        found = self._store[kind].get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def stored_all(self, kind: Kind, namespace: str | None = None) -> list[Obj]:
        return [copy.deepcopy(o) for (ns, _), o in self._store[kind].items() if namespace in (None, ns)]

    def requests_to(self, verb: str | None = None, path: str = "*") -> list[Request]:
        return [r for r in self.requests if verb in (None, r.verb) and fnmatch.fnmatchcase(r.path, path)]

    @property
    def writes(self) -> list[Request]:
        """Every request that changes something, Events aside."""
        return [r for r in self.requests if r.verb != "GET" and not r.path.endswith("/events")]

    @property
    def events(self) -> list[Obj]:
        return self.stored_all(EVENTS)

    def reasons(self, type_: str | None = None) -> list[str]:
        """The reasons of the Events recorded so far (of one type), in order."""
        return [e["reason"] for e in self.events if type_ in (None, e["type"])]

    # -- the Job controller and the kubelet, by hand ----------------------------------------------

    def start_pod(self, namespace: str, job_name: str, phase: str = "Running") -> Obj:
        """The Pod the Job controller makes for a Job, with the Job's template labels and finalizers."""
        job = self._require(JOBS, namespace, job_name)
        template = job.get("spec", {}).get("template", {}).get("metadata", {})
        pod_labels = {**template.get("labels", {}), "job-name": job_name}
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job_name,
            "uid": job["metadata"]["uid"],
            "controller": True,
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{job_name}-pod",
                "labels": pod_labels,
                "ownerReferences": [owner],
                **({"finalizers": list(template["finalizers"])} if template.get("finalizers") else {}),
            },
            "status": {"phase": phase},
        }
        return self.put(pod, namespace)

    def finish_job(
        self,
        namespace: str,
        job_name: str,
        result: Result | str | None,
        *,
        succeeded: bool,
        exit_code: int | None = None,
    ) -> None:
        """The Job's Pod terminated with `result` as its termination message, and the Job
        controller marked the Job Complete or Failed."""
        pod_name = f"{job_name}-pod"
        if self.stored(PODS, namespace, pod_name) is None:
            self.start_pod(namespace, job_name)
        terminated: Obj = {
            "exitCode": exit_code if exit_code is not None else (0 if succeeded else 1),
            "reason": "Completed" if succeeded else "Error",
        }
        message = encode(result) if isinstance(result, Result) else result
        if message is not None:
            terminated["message"] = message
        container = {"name": "runner", "state": {"terminated": terminated}}
        phase = "Succeeded" if succeeded else "Failed"
        self.change(PODS, namespace, pod_name, {"status": {"phase": phase, "containerStatuses": [container]}})
        condition = {
            "type": "Complete" if succeeded else "Failed",
            "status": "True",
            "reason": "Completed" if succeeded else "BackoffLimitExceeded",
            "lastTransitionTime": timestamp(),
        }
        counts = {"succeeded": 1} if succeeded else {"failed": 1}
        self.change(JOBS, namespace, job_name, {"status": {"conditions": [condition], **counts}})

    # -- the API server ---------------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        body = kwargs.get("body")
        query = tuple(kwargs.get("query") or ())
        self.requests.append(Request(method, path, copy.deepcopy(body), query))
        try:
            injected = next((i for i in self._injections if i.matches(method, path)), None)
            if injected is not None:
                self._injections.remove(injected)
                if injected.before is not None:
                    injected.before()
                if isinstance(injected.error, ApiException):
                    raise _StatusError(injected.error.status or 500, injected.error.reason or "injected")
                if injected.error is not None:
                    raise injected.error
            return copy.deepcopy(self._serve(method, path, body, dict(query), kwargs.get("content_type")))
        except _StatusError as status:
            # What the client's _request_sync makes of the API server's answers.
            if status.code == 404:
                raise GoneError(path) from None
            if status.code == 409 and method in ("PATCH", "PUT"):
                raise ConflictError(path) from None
            raise ApiException(status=status.code, reason=status.reason) from None

    def _serve(self, method: str, path: str, body: Any, query: Mapping[str, str], content_type: Any) -> Any:
        target = _parse(path)
        kind, namespace, name = target.kind, target.namespace, target.name
        if name is None:
            if method == "GET":
                selector = query.get("labelSelector", "")
                items = [
                    o
                    for (ns, _), o in self._store[kind].items()
                    if ns == namespace and selects(selector, o["metadata"].get("labels") or {})
                ]
                return {"kind": f"{kind.kind}List", "items": items}
            if method == "POST":
                return self._create(kind, namespace, body)
            raise _StatusError(405, f"{method} on a collection")
        if method == "GET":
            return self._require(kind, namespace, name)
        if method == "DELETE":
            return self._delete(kind, namespace, name)
        if method not in ("PATCH", "PUT"):
            raise _StatusError(405, method)
        if target.subresource not in (None, "status") or (target.subresource and kind not in WITH_STATUS):
            raise _StatusError(404, f"no subresource {target.subresource}")
        if method == "PATCH" and content_type != "application/merge-patch+json":
            raise _StatusError(415, f"only JSON merge patches are served, not {content_type}")
        if not isinstance(body, dict):
            raise _StatusError(400, "the body is not an object")
        old = self._require(kind, namespace, name)
        precondition = (body.get("metadata") or {}).get("resourceVersion")
        if precondition is not None and precondition != old["metadata"]["resourceVersion"]:
            raise _StatusError(409, "the object has been modified")
        new = merge_patch(old, body) if method == "PATCH" else copy.deepcopy(body)
        return self._update(kind, old, new, target.subresource)

    def _require(self, kind: Kind, namespace: str, name: str) -> Obj:
        found = self._store[kind].get((namespace, name))
        if found is None:
            raise _StatusError(404, f"{kind.plural} {namespace}/{name} not found")
        return found

    def _next_version(self) -> str:
        return str(next(self._versions))

    def _create(self, kind: Kind, namespace: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise _StatusError(400, "the body is not an object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("resourceVersion"):
            raise _StatusError(400, "resourceVersion should not be set on objects to be created")
        if meta.get("namespace") not in (None, namespace):
            raise _StatusError(400, "the namespace of the object does not match the namespace of the request")
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _StatusError(422, "name or generateName is required")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if (namespace, meta["name"]) in self._store[kind]:
            raise _StatusError(409, "AlreadyExists")
        meta.pop("deletionTimestamp", None)
        meta |= {
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": timestamp(),
            "resourceVersion": self._next_version(),
        }
        if kind in WITH_STATUS:
            meta["generation"] = 1
            obj.pop("status", None)
        self._store[kind][(namespace, meta["name"])] = obj
        return obj

    def _update(self, kind: Kind, old: Obj, new: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            if kind in WITH_STATUS:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
        meta = result.setdefault("metadata", {})
        for key in SERVER_OWNED:
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        if old["metadata"].get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
            if added:
                raise _StatusError(422, "Forbidden: no new finalizers can be added if the object is being deleted")
        if old.get("immutable") and any(old.get(k) != result.get(k) for k in ("data", "binaryData", "immutable")):
            raise _StatusError(422, f"{kind.kind} {meta['name']} is immutable")
        return self._commit(kind, old, result)

    def _commit(self, kind: Kind, old: Obj, new: Obj) -> Obj:
        """Store a changed object: a new resourceVersion, a new generation when its spec moved;
        a deleted object whose last finalizer went is gone."""
        if new == old:
            return old
        meta = new["metadata"]
        if "generation" in meta and _spec(old) != _spec(new):
            meta["generation"] = old["metadata"]["generation"] + 1
        meta["resourceVersion"] = self._next_version()
        key = (meta["namespace"], meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._store[kind].pop(key, None)
        else:
            self._store[kind][key] = new
        return new

    def _delete(self, kind: Kind, namespace: str, name: str) -> Obj:
        old = self._require(kind, namespace, name)
        if not old["metadata"].get("finalizers"):
            del self._store[kind][(namespace, name)]
            return {"kind": "Status", "status": "Success"}
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = timestamp()
        if "generation" in new["metadata"]:
            new["metadata"]["generation"] += 1  # the API server bumps it on graceful deletion
        new["metadata"]["resourceVersion"] = self._next_version()
        self._store[kind][(namespace, name)] = new
        return new


def _spec(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


# -- the watch cache ---------------------------------------------------------------------------------

Store = dict[Any, list[Obj]]


def _ours(object_labels: Mapping[str, str]) -> bool:
    """The label filter of the Job and Pod indexes (handlers/indexes.py OURS)."""
    return all(
        (k in object_labels) if v is kopf.PRESENT else object_labels.get(k) == v for k, v in indexes.OURS.items()
    )


class WatchCache(IndexedCache):
    """What the watches delivered, keyed by the operator's own index functions. Following (the
    default) it is in step with the fake at every lookup; after `hold()` it keeps what it had
    then, as watches that have not delivered the latest writes yet, until `follow()`."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube
        self._stores: tuple[Store, Store, Store, Store, Store] = ({}, {}, {}, {}, {})
        super().__init__(*self._stores)
        self.following = True
        self.sync()

    def hold(self) -> None:
        self.sync()
        self.following = False

    def follow(self) -> None:
        self.following = True
        self.sync()

    def sync(self) -> None:
        builds, channels, jobs, pods, revocations = self._stores
        feeds: tuple[tuple[Store, Kind, Callable[..., Any], bool], ...] = (
            (builds, IMAGEBUILDS, indexes.builds_by_image, False),
            (channels, IMAGECHANNELS, indexes.channels_by_namespace, False),
            (jobs, JOBS, indexes.jobs_by_build, True),
            (pods, PODS, indexes.pods_by_build, True),
            (revocations, GOLDENIMAGES, indexes.images_by_name, False),
        )
        for store, kind, index, filtered in feeds:
            store.clear()
            for obj in self._kube.stored_all(kind):
                body = kopf.Body(cast(kopf.RawBody, obj))
                if filtered and not _ours(obj["metadata"].get("labels") or {}):
                    continue
                entries: Mapping[Any, Obj] = index(
                    namespace=obj["metadata"]["namespace"], body=body, labels=body.metadata.labels
                )
                for key, value in entries.items():
                    store.setdefault(key, []).append(copy.deepcopy(dict(value)))

    def _fresh(self) -> None:
        if self.following:
            self.sync()

    def builds(self, namespace: str, image: str) -> list[Mapping[str, Any]]:
        self._fresh()
        return super().builds(namespace, image)

    def channels(self, namespace: str) -> list[Mapping[str, Any]]:
        self._fresh()
        return super().channels(namespace)

    def revocations(self, namespace: str, image: str) -> dict[int, str]:
        self._fresh()
        return super().revocations(namespace, image)

    def image_exists(self, namespace: str, image: str) -> bool:
        self._fresh()
        return super().image_exists(namespace, image)

    def jobs(self, namespace: str, build: str) -> list[Mapping[str, Any]]:
        self._fresh()
        return super().jobs(namespace, build)

    def pods(self, namespace: str, build: str) -> list[Mapping[str, Any]]:
        self._fresh()
        return super().pods(namespace, build)


# -- the operator on the fakes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    kind: str
    namespace: str
    name: str
    delay: float


class RecordingOperator(Operator):
    """The operator as it runs, except that reconciles asked for later (retries, requeues,
    resyncs) are recorded instead of timed, so that no test waits for a clock."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.triggers: list[Trigger] = []

    def trigger(self, kind: str, namespace: str, name: str, delay: float = 0.0) -> None:
        self.triggers.append(Trigger(kind, namespace, name, delay))

    def triggered(self, kind: str, name: str) -> list[float]:
        """The delays of the reconciles asked for `name` of `kind`."""
        return [t.delay for t in self.triggers if (t.kind, t.name) == (kind, name)]


@dataclass
class Cluster:
    """A fake cluster and an operator on it (`clouds`: the cloud access the operator uses)."""

    kube: FakeKube
    clouds: CloudAccess
    config: Config = field(default_factory=Config)
    cache: WatchCache = field(init=False)
    op: RecordingOperator = field(init=False)

    def __post_init__(self) -> None:
        self.cache = WatchCache(self.kube)
        self.op = RecordingOperator(
            config=self.config,
            kube=self.kube,
            clouds=self.clouds,
            cache=self.cache,
            reconcilers={
                GOLDENIMAGE: goldenimages.reconcile,
                IMAGEBUILD: imagebuilds.reconcile,
                IMAGECHANNEL: imagechannels.reconcile,
            },
        )


def owned_by(obj: Mapping[str, Any]) -> list[str]:
    """The UIDs of an object's controlling owners."""
    return [o["uid"] for o in obj["metadata"].get("ownerReferences") or [] if o.get("controller")]


def has_finalizer(obj: Mapping[str, Any]) -> bool:
    return labels.FINALIZER in (obj["metadata"].get("finalizers") or [])


def names(objs: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)
