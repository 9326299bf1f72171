"""The Argo CD health checks in deploy/argocd/, run as Argo CD runs them, against statuses the
operator's own planners (and its handlers, for what the models refuse) write.

Argo CD (util/lua/lua.go) runs a health script in gopher-lua, a Lua 5.1, with only the base,
table and a reduced os library open (no string or math library: `resource.customizations.
useOpenLibs` is off by default), with the live object converted from its JSON as the global
`obj`; the script returns a table whose `status` must be a health code. The same is done here
with Lua 5.1 from lupa, the script taken from the argocd-cm snippet itself.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pytest
import yaml

from goldenimage.api import RESOURCES, labels, names
from goldenimage.api.conditions import find, is_true
from goldenimage.api.group import GROUP
from goldenimage.api.labels import FINALIZER
from goldenimage.api.resources import CustomResource, GoldenImage, ImageBuild, ImageChannel
from goldenimage.api.result import CheckOutcome, ReportedArtifact, Result
from goldenimage.handlers import objects
from goldenimage.kube.client import GOLDENIMAGES, IMAGEBUILDS, IMAGECHANNELS, Kind, Kube
from goldenimage.packer.fingerprint import fingerprint, image_recipe
from goldenimage.packer.inputs import digest
from goldenimage.reconcile import goldenimage as image_planner
from goldenimage.reconcile import imagebuild as build_planner
from goldenimage.reconcile import imagechannel as channel_planner
from goldenimage.reconcile.actions import Publish
from goldenimage.reconcile.outcomes import JobOutcome
from goldenimage.reconcile.usable import BuildView
from support import corpus

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
KEY_PREFIX = "resource.customizations.health."
HEALTH_CODES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NAMESPACE = "platform"
IMAGE = "web-base"
RUNNER = "ghcr.io/goldenimage/packer-runner:0.1.0"
PLAYBOOK = "- hosts: all\n"
PLAYBOOK_REF = "web-baseline/baseline.yml"
INPUTS = {PLAYBOOK_REF: digest(PLAYBOOK)}
SOURCES = {"aws-eu": "ami-0123456789abcdef0"}
REGIONS = ("eu-west-1", "us-east-1")
RECIPE: dict[str, Any] = {
    "targets": [
        {
            "name": "aws-eu",
            "aws": {"region": "eu-west-1", "copyToRegions": ["us-east-1"], "source": {"amiId": SOURCES["aws-eu"]}},
        }
    ],
    "provisioners": [{"ansible": {"playbook": {"configMapRef": {"name": "web-baseline", "key": "baseline.yml"}}}}],
    "build": {"maxAttempts": 2},
}
State = Literal["Active", "Succeeded", "Failed"]
BUILD_SETTINGS = build_planner.BuildSettings(retry_base=timedelta(seconds=30), retry_cap=timedelta(minutes=5))


# -- Argo CD's Lua -----------------------------------------------------------------------------

# What gopher-lua's base, table and Argo CD's safe os library give a script; nothing else.
BASE = (
    "assert", "collectgarbage", "dofile", "error", "getfenv", "getmetatable", "ipairs", "load", "loadfile",
    "loadstring", "module", "newproxy", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawset",
    "require", "select", "setfenv", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION",
)  # fmt: skip
SANDBOX = """
function(script, obj, base)
  local env = {}
  for _, name in ipairs(base) do env[name] = _G[name] end
  env.table = {concat = table.concat, insert = table.insert, maxn = table.maxn, remove = table.remove,
               sort = table.sort, getn = table.getn}
  env.os = {time = os.time, date = os.date}
  env._G = env
  env.obj = obj
  local chunk, problem = loadstring(script, "=health.lua")
  if chunk == nil then error(problem, 0) end
  setfenv(chunk, env)
  return chunk()
end
"""


def scripts() -> dict[str, str]:
    """The health scripts as argocd-cm carries them, by kind."""
    data = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())["data"]
    return {key.split("_", 1)[1]: text for key, text in data.items() if key.startswith(KEY_PREFIX)}


@pytest.fixture(scope="module")
def lua51() -> ModuleType:
    # gopher-lua implements Lua 5.1.
    # lupa (Lua from PyPI, in the test extra) runs the health scripts; its absence is a failure.
    return importlib.import_module("lupa.lua51")


def _to_lua(runtime: Any, value: Any) -> Any:
    """As Argo CD's decodeValue: objects and arrays become tables (arrays from 1, a null item
    skipped as gopher-lua's Append skips nil), a null member is absent, numbers are numbers."""
    if isinstance(value, Mapping):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(i for i in value if i is not None):
            table[index + 1] = _to_lua(runtime, item)
        return table
    return value


def run_script(lua51: ModuleType, script: str, live: Mapping[str, Any]) -> dict[str, Any]:
    """Run `script` on the object `live` (its JSON) as Argo CD does; the table it returns."""
    runtime = lua51.LuaRuntime(register_eval=False)
    run = runtime.eval(SANDBOX)
    runtime.execute("debug.setmetatable('', nil)")  # no string library: no methods on strings either
    returned = run(script, _to_lua(runtime, json.loads(json.dumps(live))), runtime.table_from(BASE))
    assert lua51.lua_type(returned) == "table", f"a health script must return a table, not {returned!r}"
    return dict(returned.items())


def health(lua51: ModuleType, live: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD would show them for the object `live`."""
    returned = run_script(lua51, scripts()[live["kind"]], live)
    # Argo CD reads the table as JSON into {status, message}; any other status becomes Unknown.
    assert set(returned) <= {"status", "message"}, returned
    assert returned["status"] in HEALTH_CODES, returned
    assert isinstance(returned.get("message", ""), str), returned
    return returned["status"], returned.get("message", "")


# -- live objects from the planners ------------------------------------------------------------


def live(resource: CustomResource) -> dict[str, Any]:
    """The object as the API server returns it."""
    return resource.wire()


def bumped(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` right after someone changed its spec: a new generation the operator has not seen."""
    out = copy.deepcopy(dict(obj))
    out["metadata"]["generation"] += 1
    return out


def build(version: int = 1, *, revoked: str | None = None, generation: int = 1) -> ImageBuild:
    return ImageBuild.model_validate(
        {
            "metadata": {
                "name": names.build(IMAGE, version),
                "namespace": NAMESPACE,
                "uid": f"uid-build-{version}",
                "generation": generation,
                "finalizers": [FINALIZER],
                "creationTimestamp": (NOW - timedelta(hours=1)).isoformat(),
            },
            "spec": {
                "image": IMAGE,
                "version": version,
                "fingerprint": fingerprint(image().spec, sources=SOURCES, inputs=INPUTS, runner=RUNNER),
                "reason": "Initial",
                "recipe": RECIPE,
                "sources": SOURCES,
                "inputs": INPUTS,
                **({"revoked": {"reason": revoked}} if revoked else {}),
            },
        }
    )


def _job(
    name: str, state: State, result: Result | None = None, *, region: str = "", **kw: Any
) -> dict[str, JobOutcome]:
    role = labels.ROLE_VALIDATION if region else labels.ROLE_BUILD
    outcome = JobOutcome(
        name=name, target="aws-eu", attempt=1, state=state, role=role, region=region, result=result, **kw
    )
    return {name: outcome}


def build_job(b: ImageBuild, state: State, result: Result | None = None, attempt: int = 1, **kw: Any) -> dict[str, Any]:
    return _job(names.build_job(b.metadata.name, "aws-eu", attempt), state, result, finished_at=NOW, **kw)


def validation_jobs(b: ImageBuild, state: State, result: Result | None = None) -> dict[str, JobOutcome]:
    out: dict[str, JobOutcome] = {}
    for region in REGIONS:
        out |= _job(names.validation_job(b.metadata.name, "aws-eu", region, 1), state, result, region=region)
    return out


def built(b: ImageBuild) -> dict[str, JobOutcome]:
    artifacts = [ReportedArtifact(region=r, id=f"ami-{b.spec.version}-{r}") for r in REGIONS]
    return build_job(b, "Succeeded", Result(ok=True, artifacts=artifacts, packer_version="1.6.6"))


PASSED = Result(kind="validate", ok=True, message="booted", checks=[CheckOutcome(name="tcp-22", passed=True)])
FAILED_CHECK = Result(
    kind="validate",
    ok=False,
    message="failed: http-80",
    checks=[CheckOutcome(name="http-80", passed=False, message="GET http://10.0.0.4:80/health: connection refused")],
)


def observe(**kwargs: Any) -> build_planner.BuildObservation:
    return build_planner.BuildObservation(now=kwargs.pop("now", NOW), inputs_exist=True, **kwargs)


NEW = build_planner.BuildObservation(now=NOW, inputs_exist=False, input_contents={PLAYBOOK_REF: PLAYBOOK})


def run_build(b: ImageBuild, *steps: Callable[[ImageBuild], build_planner.BuildObservation]) -> ImageBuild:
    """The build after the planner saw each observation in turn (each made from the build as it
    stands), every status written back as the executor writes it."""
    for step in steps:
        plan = build_planner.plan(b, step(b), BUILD_SETTINGS)
        b = b.model_copy(update={"status": plan.status})
    return b


def new(b: ImageBuild) -> build_planner.BuildObservation:
    return NEW


def running(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(jobs=build_job(b, "Active"))


def validating(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(jobs={**built(b), **validation_jobs(b, "Active")})


def validated(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(jobs={**built(b), **validation_jobs(b, "Succeeded", PASSED)})


def validation_failed(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(jobs={**built(b), **validation_jobs(b, "Failed", FAILED_CHECK)})


def failed_attempt(attempt: int) -> Callable[[ImageBuild], build_planner.BuildObservation]:
    def step(b: ImageBuild) -> build_planner.BuildObservation:
        failure = Result(ok=False, error_class="Retryable", message="Error waiting for AMI: timeout")
        return observe(jobs=build_job(b, "Failed", failure, attempt))

    return step


def retry_due(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(now=NOW + timedelta(minutes=1))


def missing_secret(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(missing_secrets=["rhsm/token"])


def missing_service_account(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(missing_service_accounts=["packer-aws"])


def inputs_changed(b: ImageBuild) -> build_planner.BuildObservation:
    return build_planner.BuildObservation(now=NOW, inputs_exist=False, input_contents={PLAYBOOK_REF: "- changed\n"})


def artifacts_gone(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(missing=frozenset({("us-east-1", f"ami-{b.spec.version}-us-east-1")}))


def artifacts_back(b: ImageBuild) -> build_planner.BuildObservation:
    return observe(missing=frozenset())


def revoke(b: ImageBuild, reason: str = "CVE-2026-1234") -> ImageBuild:
    """A user's revocation: the spec changes, and with it the generation."""
    spec = b.spec.model_copy(update={"revoked": build(revoked=reason).spec.revoked})
    meta = b.metadata.model_copy(update={"generation": (b.metadata.generation or 1) + 1})
    return b.model_copy(update={"spec": spec, "metadata": meta})


def validated_build(version: int = 1) -> ImageBuild:
    return run_build(build(version), new, running, validating, validated)


def revoked_build(version: int = 1) -> ImageBuild:
    return run_build(revoke(validated_build(version)), lambda b: observe())


def failed_build(version: int = 1) -> ImageBuild:
    return run_build(build(version), new, failed_attempt(1), retry_due, failed_attempt(2))


def validating_build(version: int = 1) -> ImageBuild:
    return run_build(build(version), new, running, validating)


# -- GoldenImage -------------------------------------------------------------------------------


def image(spec: Mapping[str, Any] | None = None, generation: int = 1) -> GoldenImage:
    return GoldenImage.model_validate(
        {
            "metadata": {"name": IMAGE, "namespace": NAMESPACE, "uid": "uid-image", "generation": generation},
            "spec": dict(spec or RECIPE),
        }
    )


def summary(b: ImageBuild) -> image_planner.BuildSummary:
    """What the GoldenImage handler tells its planner about one of its builds."""
    status = b.status
    return image_planner.BuildSummary(
        name=b.metadata.name,
        version=b.spec.version,
        fingerprint=b.spec.fingerprint,
        created=b.metadata.creation_timestamp or NOW,
        recipe=image_recipe(b.spec.recipe),
        sources=b.spec.sources,
        inputs=b.spec.inputs,
        annotations=b.metadata.annotations,
        ready=find(status.conditions, "Ready") if status else None,
        validated=status is not None and is_true(status.conditions, "Validated"),
        revoked=b.spec.revoked is not None,
        finished=build_planner.finished(b),
    )


def planned_image(*builds: ImageBuild, **kw: Any) -> dict[str, Any]:
    target = image()
    observed = image_planner.ImageObservation(
        now=NOW,
        runner=RUNNER,
        builds=[summary(b) for b in builds],
        sources=kw.pop("sources", SOURCES),
        inputs=kw.pop("inputs", INPUTS),
        **kw,
    )
    plan = image_planner.plan(target, observed)
    return live(target.model_copy(update={"status": plan.status}))


# -- ImageChannel ------------------------------------------------------------------------------

LATEST: dict[str, Any] = {"source": {"latestValidated": {}}}
UPSTREAM: dict[str, Any] = {"source": {"channel": "web-candidate"}}
SSM = {"publish": {"aws": {"ssmParameter": "/golden/platform/web/prod"}}}


def channel(spec: Mapping[str, Any], status: Any = None, generation: int = 1) -> ImageChannel:
    return ImageChannel.model_validate(
        {
            "metadata": {"name": "web-prod", "namespace": NAMESPACE, "uid": "uid-channel", "generation": generation},
            "spec": {"image": IMAGE, **spec},
            **({"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)} if status else {}),
        }
    )


def channel_observation(*builds: ImageBuild, **kw: Any) -> channel_planner.ChannelObservation:
    return channel_planner.ChannelObservation(
        now=kw.pop("now", NOW), builds={b.spec.version: BuildView.of(b) for b in builds}, **kw
    )


def plan_channel(
    spec: Mapping[str, Any], *passes: channel_planner.ChannelObservation
) -> tuple[ImageChannel, channel_planner.ChannelPlan]:
    """The channel after the planner saw each observation in turn, and the last plan."""
    target = channel(spec)
    plan: channel_planner.ChannelPlan | None = None
    for observed in passes:
        plan = channel_planner.plan(target, observed)
        target = target.model_copy(update={"status": plan.status})
    assert plan is not None
    return target, plan


def planned_channel(spec: Mapping[str, Any], *passes: channel_planner.ChannelObservation) -> dict[str, Any]:
    return live(plan_channel(spec, *passes)[0])


def upstream(*builds: ImageBuild) -> Any:
    """The status of an upstream channel that followed the newest validated build."""
    candidate, _ = plan_channel(LATEST, channel_observation(*builds))
    return candidate.status


def published(spec: Mapping[str, Any], ok: bool, *builds: ImageBuild, suspend: bool = False) -> dict[str, Any]:
    """A channel whose publication was written once (as the executor's ledger records it), then,
    with `suspend`, suspended before the next reconcile."""
    first, plan = plan_channel(spec, channel_observation(*builds))
    (action,) = [a for a in plan.actions if isinstance(a, Publish)]
    if suspend:
        first = channel({**spec, "suspend": True}, first.status, generation=2)
    message = "published" if ok else "AccessDenied: not authorized to perform ssm:PutParameter"
    outcome = channel_planner.PublishOutcome(key=action.key, ok=ok, message=message, at=NOW)
    again = channel_planner.plan(first, channel_observation(*builds, published={"aws": outcome}))
    return live(first.model_copy(update={"status": again.status}))


def pointer_lost() -> dict[str, Any]:
    """Pointed at version 1, which was then revoked, with nothing usable left."""
    target, _ = plan_channel(LATEST, channel_observation(validated_build(1)))
    plan = channel_planner.plan(target, channel_observation(revoked_build(1)))
    return live(target.model_copy(update={"status": plan.status}))


def upstream_revoked() -> dict[str, Any]:
    """Follows web-candidate at version 1; web-candidate moved to version 2, revoked since."""
    one, two = validated_build(1), validated_build(2)
    target, _ = plan_channel(UPSTREAM, channel_observation(one, upstream=upstream(one)))
    plan = channel_planner.plan(target, channel_observation(one, revoked_build(2), upstream=upstream(one, two)))
    return live(target.model_copy(update={"status": plan.status}))


def suspended() -> dict[str, Any]:
    """Pointed at version 1, then suspended (a spec change): version 2 does not move it."""
    one = validated_build(1)
    target, _ = plan_channel(LATEST, channel_observation(one))
    edited = channel({**LATEST, "suspend": True}, target.status, generation=2)
    plan = channel_planner.plan(edited, channel_observation(one, validated_build(2)))
    return live(edited.model_copy(update={"status": plan.status}))


def fell_back() -> dict[str, Any]:
    """Pointed at version 2 after version 1; version 2 revoked: back to version 1."""
    one, two = validated_build(1), validated_build(2)
    target, _ = plan_channel(LATEST, channel_observation(one), channel_observation(one, two))
    plan = channel_planner.plan(target, channel_observation(one, revoked_build(2)))
    return live(target.model_copy(update={"status": plan.status}))


# -- what the handlers write for objects the models refuse -------------------------------------


class OneObjectKube(Kube):
    """Serves the one object a reconcile reads and records the statuses written for it."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.statuses: list[dict[str, Any]] = []

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.body)

    async def write_status(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None,
        old: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.statuses.append(status)
        return {**self.body, "status": status}

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        return None


KINDS: dict[str, tuple[Kind, type[CustomResource]]] = {
    "GoldenImage": (GOLDENIMAGES, GoldenImage),
    "ImageBuild": (IMAGEBUILDS, ImageBuild),
    "ImageChannel": (IMAGECHANNELS, ImageChannel),
}


def refused(body: Mapping[str, Any], status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`body` after the operator read it, found the models refuse it, and reported why (the path
    of every reconcile: handlers.objects)."""
    obj = copy.deepcopy(dict(body))
    meta = obj.setdefault("metadata", {})
    meta.setdefault("namespace", NAMESPACE)
    meta.setdefault("generation", 1)
    meta.setdefault("resourceVersion", "7")
    if status is not None:
        obj["status"] = dict(status)
    kind, model = KINDS[obj["kind"]]
    kube = OneObjectKube(obj)
    assert asyncio.run(objects.read_valid(kube, kind, model, meta["namespace"], meta["name"])) is None
    (written,) = kube.statuses
    return {**obj, "status": written}


def invalid_cron_image() -> dict[str, Any]:
    (case,) = [c for c in corpus.load() if not c.admission and c.object["kind"] == "GoldenImage"]
    return refused(case.object)


def invalid_channel() -> dict[str, Any]:
    """A channel the models refuse though it was admitted (say, a CRD older than the operator),
    with what the operator had written for it before."""
    good = planned_channel(LATEST, channel_observation(validated_build(1)))
    body = {**good, "spec": {**good["spec"], "historyLimit": 1000}}
    return refused(body, good["status"])


def invalid_build() -> dict[str, Any]:
    good = live(validated_build(1))
    body = {**good, "spec": {**good["spec"], "fingerprint": "md5:0"}}
    return refused(body, good["status"])


# -- the situations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Situation:
    name: str
    make: Callable[[], dict[str, Any]]
    health: str
    reason: str | None  # the Ready reason (or Published's, when the message is Published's)
    message: str = "Ready"  # which condition the message is taken from; "generation" when none

    def __str__(self) -> str:
        return self.name


SITUATIONS = [
    # ImageBuild
    Situation("build/not-reconciled-yet", lambda: live(build()), "Progressing", None, "operator"),
    Situation("build/new", lambda: live(run_build(build(), new)), "Progressing", "Building"),
    Situation("build/building", lambda: live(run_build(build(), new, running)), "Progressing", "Building"),
    Situation("build/retrying", lambda: live(run_build(build(), new, failed_attempt(1))), "Progressing", "Building"),
    Situation("build/built-and-validating", lambda: live(validating_build()), "Progressing", "Validating"),
    Situation("build/validated", lambda: live(validated_build()), "Healthy", "Validated"),
    Situation("build/build-failed", lambda: live(failed_build()), "Degraded", "BuildFailed"),
    Situation(
        "build/validation-failed",
        lambda: live(run_build(build(), new, running, validation_failed)),
        "Degraded",
        "ValidationFailed",
    ),
    Situation("build/blocked-on-secret", lambda: live(run_build(build(), missing_secret)), "Degraded", "MissingSecret"),
    Situation(
        "build/blocked-on-service-account",
        lambda: live(run_build(build(), missing_service_account)),
        "Degraded",
        "MissingServiceAccount",
    ),
    Situation("build/inputs-changed", lambda: live(run_build(build(), inputs_changed)), "Degraded", "InputsChanged"),
    Situation(
        "build/revocation-not-seen-yet", lambda: live(revoke(validated_build())), "Progressing", None, "generation"
    ),
    Situation("build/revoked", lambda: live(revoked_build()), "Degraded", "Revoked"),
    Situation(
        "build/revoked-mid-build",
        lambda: live(run_build(revoke(run_build(build(), new, running)), running)),
        "Degraded",
        "Revoked",
    ),
    Situation(
        "build/artifacts-missing",
        lambda: live(run_build(validated_build(), artifacts_gone)),
        "Degraded",
        "ArtifactsMissing",
    ),
    Situation(
        "build/artifacts-back",
        lambda: live(run_build(validated_build(), artifacts_gone, artifacts_back)),
        "Healthy",
        "Validated",
    ),
    Situation("build/invalid-spec", invalid_build, "Degraded", "InvalidSpec"),
    # GoldenImage
    Situation("image/not-reconciled-yet", lambda: live(image()), "Progressing", None, "operator"),
    Situation("image/first-version", planned_image, "Progressing", "Building"),
    Situation("image/building", lambda: planned_image(run_build(build(), new, running)), "Progressing", "Building"),
    Situation("image/validating", lambda: planned_image(validating_build()), "Progressing", "Validating"),
    Situation("image/ready", lambda: planned_image(validated_build()), "Healthy", "Validated"),
    Situation(
        "image/newer-version-building",
        lambda: planned_image(validated_build(1), run_build(build(2), new, running)),
        "Progressing",
        "Building",
    ),
    Situation("image/build-failed", lambda: planned_image(failed_build()), "Degraded", "BuildFailed"),
    Situation(
        "image/validation-failed",
        lambda: planned_image(run_build(build(), new, running, validation_failed)),
        "Degraded",
        "ValidationFailed",
    ),
    Situation(
        "image/build-blocked-on-secret",
        lambda: planned_image(run_build(build(), missing_secret)),
        "Degraded",
        "MissingSecret",
    ),
    Situation("image/latest-revoked", lambda: planned_image(revoked_build()), "Degraded", "Revoked"),
    Situation(
        "image/source-not-found",
        lambda: planned_image(sources={}, source_errors={"aws-eu": "no AMI matches RHEL-9*"}),
        "Degraded",
        "SourceNotFound",
    ),
    Situation(
        "image/missing-config-map",
        lambda: planned_image(inputs={}, missing_inputs=[PLAYBOOK_REF]),
        "Degraded",
        "MissingConfigMap",
    ),
    Situation(
        "image/missing-credentials",
        lambda: planned_image(sources={}, credential_errors={"aws": "Secret platform/aws-keys does not exist"}),
        "Degraded",
        "MissingCredentials",
    ),
    Situation("image/invalid-spec", invalid_cron_image, "Degraded", "InvalidSpec"),
    Situation(
        "image/edit-not-seen-yet", lambda: bumped(planned_image(validated_build())), "Progressing", None, "generation"
    ),
    # ImageChannel
    Situation("channel/not-reconciled-yet", lambda: live(channel(LATEST)), "Progressing", None, "operator"),
    Situation(
        "channel/promoted",
        lambda: planned_channel(LATEST, channel_observation(validated_build())),
        "Healthy",
        "Promoted",
    ),
    Situation(
        "channel/first-build-not-validated-yet",
        lambda: planned_channel(LATEST, channel_observation(validating_build())),
        "Progressing",
        "NoValidatedVersion",
    ),
    Situation(
        "channel/soaking-before-its-first-version",
        lambda: planned_channel(
            {"source": {"latestValidated": {}, "minSoak": "2h"}},
            channel_observation(validated_build(), now=NOW + timedelta(minutes=30)),
        ),
        "Progressing",
        "NoVersion",
    ),
    Situation(
        "channel/upstream-empty",
        lambda: planned_channel(UPSTREAM, channel_observation(validating_build(), upstream=upstream())),
        "Progressing",
        "UpstreamEmpty",
    ),
    Situation(
        "channel/following-upstream",
        lambda: planned_channel(UPSTREAM, channel_observation(validated_build(), upstream=upstream(validated_build()))),
        "Healthy",
        "Promoted",
    ),
    Situation(
        "channel/upstream-not-found",
        lambda: planned_channel(UPSTREAM, channel_observation(validated_build(), upstream_exists=False)),
        "Degraded",
        "UpstreamNotFound",
    ),
    Situation("channel/upstream-points-at-revoked", upstream_revoked, "Degraded", "UpstreamRevoked"),
    Situation(
        # A reference to something missing, like an upstream channel that does not exist.
        "channel/image-not-found",
        lambda: planned_channel(LATEST, channel_observation(image_exists=False)),
        "Degraded",
        "ImageNotFound",
    ),
    Situation(
        "channel/pinned",
        lambda: planned_channel({"version": 1}, channel_observation(validated_build(1), validated_build(2))),
        "Healthy",
        "Promoted",
    ),
    Situation(
        "channel/pinned-to-failed-version",
        lambda: planned_channel({"version": 2}, channel_observation(validated_build(1), failed_build(2))),
        "Degraded",
        "PinnedNotValidated",
    ),
    Situation(
        # The reason does not tell a version still on its way from one that failed.
        "channel/pinned-to-version-still-validating",
        lambda: planned_channel({"version": 2}, channel_observation(validated_build(1), validating_build(2))),
        "Degraded",
        "PinnedNotValidated",
    ),
    Situation(
        "channel/pinned-to-revoked-version",
        lambda: planned_channel({"version": 2}, channel_observation(validated_build(1), revoked_build(2))),
        "Degraded",
        "PinnedRevoked",
    ),
    Situation(
        "channel/pinned-to-version-without-build",
        lambda: planned_channel({"version": 9}, channel_observation(validated_build(1))),
        "Degraded",
        "PinnedNotFound",
    ),
    Situation("channel/current-revoked-fell-back", fell_back, "Healthy", "Promoted"),
    Situation("channel/current-revoked-nothing-left", pointer_lost, "Degraded", "NoValidatedVersion"),
    Situation("channel/suspended", suspended, "Suspended", "Promoted"),
    Situation(
        "channel/suspended-before-its-first-version",
        lambda: planned_channel({**LATEST, "suspend": True}, channel_observation(validated_build())),
        "Suspended",
        "NoVersion",
    ),
    Situation(
        "channel/publishing",
        lambda: planned_channel({**LATEST, **SSM}, channel_observation(validated_build())),
        "Progressing",
        "Publishing",
        "Published",
    ),
    Situation(
        "channel/published", lambda: published({**LATEST, **SSM}, True, validated_build()), "Healthy", "Promoted"
    ),
    Situation(
        "channel/publish-failed",
        lambda: published({**LATEST, **SSM}, False, validated_build()),
        "Degraded",
        "PublishFailed",
        "Published",
    ),
    Situation(
        "channel/suspended-and-publish-failed",
        lambda: published({**LATEST, **SSM}, False, validated_build(), suspend=True),
        "Degraded",
        "PublishFailed",
        "Published",
    ),
    Situation("channel/invalid-spec", invalid_channel, "Degraded", "InvalidSpec"),
    Situation(
        "channel/edit-not-seen-yet",
        lambda: bumped(planned_channel(LATEST, channel_observation(validated_build()))),
        "Progressing",
        None,
        "generation",
    ),
]


def _condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_]
    assert found, f"no {type_} condition in {obj.get('status')}"
    return dict(found[0])


@pytest.mark.parametrize("situation", SITUATIONS, ids=str)
def test_health_of_what_the_operator_writes(lua51: ModuleType, situation: Situation) -> None:
    obj = situation.make()
    status, message = health(lua51, obj)
    if situation.message in ("Ready", "Published"):
        condition = _condition(obj, situation.message)
        # The situation is the one its name says, and the health says what the operator says.
        assert condition["reason"] == situation.reason
        assert (status, message) == (situation.health, condition["message"])
        assert message
    elif situation.message == "generation":
        assert (status, message) == (
            situation.health,
            f"waiting for the operator to observe generation {obj['metadata']['generation']}",
        )
    else:
        assert "status" not in obj
        assert (status, message) == (situation.health, "waiting for the operator")


def test_the_situations_cover_every_kind() -> None:
    assert {s.name.split("/")[0] for s in SITUATIONS} == {"build", "image", "channel"}
    assert len({s.name for s in SITUATIONS}) == len(SITUATIONS)


@pytest.mark.parametrize("case", corpus.load(), ids=str)
def test_every_object_the_models_refuse_is_degraded_with_the_reason(lua51: ModuleType, case: corpus.Case) -> None:
    """The invalid-object corpus, as the operator reports it when such an object reaches it."""
    obj = refused(case.object)
    ready = _condition(obj, "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert health(lua51, obj) == ("Degraded", ready["message"])


def test_a_status_for_an_older_generation_is_progressing_even_if_it_was_healthy(lua51: ModuleType) -> None:
    """Ready's own observedGeneration counts too: a status written by an operator that sets only
    the condition's is not taken for the current spec's."""
    obj = planned_channel(LATEST, channel_observation(validated_build()))
    assert health(lua51, obj)[0] == "Healthy"
    stale = copy.deepcopy(obj)
    for condition in stale["status"]["conditions"]:
        condition["observedGeneration"] = 0
    assert health(lua51, stale) == ("Progressing", "waiting for the operator to observe generation 1")


def test_an_object_without_conditions_waits_for_ready(lua51: ModuleType) -> None:
    for kind in ("GoldenImage", "ImageBuild", "ImageChannel"):
        obj = {
            "kind": kind,
            "metadata": {"name": "x", "generation": 1},
            "spec": {},
            "status": {"observedGeneration": 1},
        }
        assert health(lua51, obj) == ("Progressing", "waiting for the operator to report Ready")


def test_odd_values_are_not_errors(lua51: ModuleType) -> None:
    """What a hand-edited or foreign object may hold never makes the script fail (Argo CD would
    show Unknown with the Lua error)."""
    odd: list[dict[str, Any]] = [
        {"spec": "text", "status": {"conditions": "text"}},
        {"spec": {"suspend": "yes"}, "status": {"observedGeneration": "1", "conditions": [None, 3, {"type": 1}]}},
        {"status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}], "history": {}}},
        {"metadata": {"name": "x"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}},
    ]
    for kind in ("GoldenImage", "ImageBuild", "ImageChannel"):
        for extra in odd:
            obj = {"kind": kind, "metadata": {"name": "x", "generation": 1}, **extra}
            health(lua51, obj)


def test_the_sandbox_is_argo_cds(lua51: ModuleType) -> None:
    """No string or math library and no string methods, as in Argo CD without useOpenLibs."""
    probe = 'return {status = "Healthy", message = tostring(string) .. " " .. tostring(math)}'
    assert run_script(lua51, probe, {}) == {"status": "Healthy", "message": "nil nil"}
    with pytest.raises(lua51.LuaError):
        run_script(lua51, 'return {status = ("x"):upper()}', {})
    assert run_script(lua51, 'return {status = "Healthy", message = table.concat({"a", "b"}, "-")}', {}) == {
        "status": "Healthy",
        "message": "a-b",
    }


# -- the files agree ---------------------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("argocd_generate", ARGOCD / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_one_script_per_kind_of_the_api() -> None:
    kinds = {r.definition.kind for r in RESOURCES}
    files = {p.name for p in (ARGOCD / "health").glob("*.lua")}
    assert files == {f"{GROUP}_{kind}.lua" for kind in kinds}


def test_argocd_cm_and_the_helm_values_embed_exactly_the_lua_files() -> None:
    files = {f"{KEY_PREFIX}{p.stem}": p.read_text() for p in (ARGOCD / "health").glob("*.lua")}
    config_map = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert (config_map["apiVersion"], config_map["kind"], config_map["metadata"]["name"]) == (
        "v1",
        "ConfigMap",
        "argocd-cm",
    )
    assert config_map["data"] == files
    values = yaml.safe_load((ARGOCD / "values-argo-cd.yaml").read_text())
    assert values == {"configs": {"cm": files}}


def test_the_generated_files_are_up_to_date() -> None:
    generator = _generator()
    outputs: dict[Path, str] = generator.outputs()
    assert {p.name for p in outputs} == {"argocd-cm.yaml", "values-argo-cd.yaml"}
    for path, text in outputs.items():
        assert path.read_text() == text, f"{path.name} is out of date: run deploy/argocd/generate.py"


def test_the_same_status_gives_the_same_health_from_each_file(lua51: ModuleType) -> None:
    """The scripts as argocd-cm carries them are the .lua files (checked above) and run as such."""
    obj = live(validated_build())
    text = (ARGOCD / "health" / f"{GROUP}_ImageBuild.lua").read_text()
    assert run_script(lua51, text, obj) == run_script(lua51, scripts()["ImageBuild"], obj)
