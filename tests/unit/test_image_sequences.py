"""Generated sequences for the GoldenImage planner: the spec changes (and changes back), the
source moves, a rebuild is requested, builds finish, validate and are deleted by hand, channels
take and drop references, versions are declared revoked, time passes. The plan's actions are
carried out as the operator would, and after every step:

- a new version is numbered above every version ever seen, and `latestVersion` never goes down;
- a version is created only when no other is at work (one unfinished version per image);
- retention never deletes a build a channel references, the newest validated one, or one at work;
- a declared revocation neither creates a version nor is planned twice, and only declared
  versions are revoked;
- with nothing changed but time, no version is created, except by maxAge: only when the newest
  build is that old and done;
- planning again with nothing changed plans nothing new;
- the planner never raises.

`GOLDENIMAGE_EXAMPLES=10000` runs more examples than the default.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from goldenimage.api import labels
from goldenimage.api.goldenimage import GoldenImageStatus
from goldenimage.api.resources import GoldenImage
from goldenimage.packer.fingerprint import image_recipe
from goldenimage.reconcile.actions import AnnotateBuild, CreateBuild, DeleteBuild, RevokeBuild
from goldenimage.reconcile.goldenimage import BuildSummary, ImageObservation, ImagePlan, plan
from support import generated

START = datetime(2026, 11, 21, tzinfo=UTC)
RUNNER = "ghcr.io/goldenimage/packer-runner:0.1.0"
SPEC = """
targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiFilter: {name: "RHEL-9*", owners: ["309956199498"]}}}}]
provisioners: [{shell: {inline: ["dnf -y update"]}}]
retention: {keepVersions: 2}
"""


class Image(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.role = "web"
        self.source = "ami-00000000000000001"
        self.token = ""
        self.revocations: dict[int, str] = {}
        self.max_age = False
        self.status = GoldenImageStatus()
        self.builds: dict[str, BuildSummary] = {}
        self.referenced: set[str] = set()
        self.seen: set[int] = set()
        self.revoked_by_plan: set[str] = set()
        self.changed = True  # anything but time since the last version was created

    # -- the world ------------------------------------------------------------------------

    @rule(role=st.sampled_from(["web", "api"]))
    def change_spec(self, role: str) -> None:
        self.changed |= role != self.role
        self.role = role

    @rule(source=st.sampled_from(["ami-00000000000000001", "ami-00000000000000002"]))
    def move_source(self, source: str) -> None:
        self.changed |= source != self.source
        self.source = source

    @rule(token=st.sampled_from(["", "t1", "t2"]))
    def request_rebuild(self, token: str) -> None:
        self.changed |= token != self.token
        self.token = token

    @rule(version=st.integers(min_value=1, max_value=8), reason=st.sampled_from(["CVE-1", "CVE-2"]))
    def declare_revocation(self, version: int, reason: str) -> None:
        self.revocations[version] = reason

    @rule(on=st.booleans())
    def set_max_age(self, on: bool) -> None:
        self.max_age = on

    @rule(hours=st.integers(min_value=1, max_value=100))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @precondition(lambda self: self.builds)
    @rule(data=st.data(), validated=st.booleans())
    def finish(self, data: st.DataObject, validated: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.builds)))
        self.builds[name] = dataclasses.replace(self.builds[name], finished=True, validated=validated)

    @precondition(lambda self: self.builds)
    @rule(data=st.data())
    def delete_by_hand(self, data: st.DataObject) -> None:
        del self.builds[data.draw(st.sampled_from(sorted(self.builds)))]
        self.changed = True  # the newest build may be gone: building again is allowed

    @precondition(lambda self: self.builds)
    @rule(data=st.data())
    def reference(self, data: st.DataObject) -> None:
        self.referenced.add(data.draw(st.sampled_from(sorted(self.builds))))

    @rule()
    def drop_references(self) -> None:
        self.referenced.clear()

    # -- planning after every step --------------------------------------------------------

    def _image(self) -> GoldenImage:
        spec: dict[str, Any] = yaml.safe_load(SPEC) | {"tags": {"Role": self.role}}
        if self.max_age:
            spec["rebuild"] = {"maxAge": "24h"}
        if self.revocations:
            spec["revocations"] = [{"version": v, "reason": r} for v, r in sorted(self.revocations.items())]
        return GoldenImage.model_validate(
            {
                "metadata": {
                    "name": "web-base",
                    "namespace": "platform",
                    "uid": "u-1",
                    "generation": 1,
                    "annotations": {labels.REBUILD: self.token} if self.token else {},
                },
                "spec": spec,
                "status": self.status.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
        )

    def _observe(self) -> ImageObservation:
        return ImageObservation(
            now=self.now,
            runner=RUNNER,
            builds=tuple(self.builds.values()),
            sources={"aws-eu": self.source},
            referenced=frozenset(self.referenced),
        )

    @invariant()
    def plan_and_carry_out(self) -> None:
        # Each plan sees what the previous one did (a version created is retention's business
        # in the next pass); within four passes nothing is left to do.
        for _ in range(4):
            result = plan(self._image(), self._observe())
            self._check(result)
            self._carry_out(result)
            self.status = result.status
            if any(isinstance(a, CreateBuild) for a in result.actions):
                self.changed = False  # a change made while a version was at work waits for it
            if not [a for a in result.actions if isinstance(a, CreateBuild | RevokeBuild | DeleteBuild)]:
                return
        raise AssertionError(f"still acting after four passes: {result.actions}")

    def _check(self, result: ImagePlan) -> None:
        created = [a for a in result.actions if isinstance(a, CreateBuild)]
        assert len(created) <= 1
        for create in created:
            at_work = [b.name for b in self.builds.values() if not (b.finished or b.revoked)]
            assert not at_work, f"version {create.spec.version} while {at_work} are at work"
            assert create.spec.version not in self.seen, f"version {create.spec.version} again"
            assert create.spec.version > max(self.seen, default=0)
            if create.spec.reason == "MaxAge":
                # Only when the newest build is that old, and never while it is still at work.
                latest = max(self.builds.values(), key=lambda b: b.version)
                assert self.max_age and self.now - latest.created >= timedelta(hours=24) and latest.finished
            else:
                assert self.changed, f"version {create.spec.version} ({create.spec.reason}) with nothing changed"
        previous = self.status.latest_version or 0
        assert (result.status.latest_version or 0) >= previous, "latestVersion went down"
        newest_validated = max(
            (b for b in self.builds.values() if b.validated and not b.revoked),
            key=lambda b: b.version,
            default=None,
        )
        for delete in (a for a in result.actions if isinstance(a, DeleteBuild)):
            build = self.builds[delete.name]
            assert delete.name not in self.referenced, f"retired {delete.name}, which a channel references"
            assert build.finished, f"retired {delete.name} while it is at work"
            assert newest_validated is None or delete.name != newest_validated.name
        for revoke in (a for a in result.actions if isinstance(a, RevokeBuild)):
            build = self.builds[revoke.name]
            assert not build.revoked and revoke.name not in self.revoked_by_plan
            assert self.revocations.get(build.version) == revoke.reason

    def _carry_out(self, result: ImagePlan) -> None:
        for action in result.actions:
            if isinstance(action, CreateBuild):
                spec = action.spec
                self.seen.add(spec.version)
                self.builds[action.name] = BuildSummary(
                    name=action.name,
                    version=spec.version,
                    fingerprint=spec.fingerprint,
                    created=self.now,
                    recipe=image_recipe(spec.recipe),
                    sources=spec.sources,
                    inputs=spec.inputs,
                    annotations=dict(action.annotations),
                    revoked=spec.revoked is not None,
                    revoked_by=(spec.revoked.revoked_by or "") if spec.revoked is not None else "",
                    finished=spec.revoked is not None,
                )
            elif isinstance(action, DeleteBuild):
                del self.builds[action.name]
            elif isinstance(action, RevokeBuild):
                self.revoked_by_plan.add(action.name)
                self.builds[action.name] = dataclasses.replace(
                    self.builds[action.name], revoked=True, revoked_by=action.revoked_by
                )
            elif isinstance(action, AnnotateBuild) and action.name in self.builds:
                build = self.builds[action.name]
                self.builds[action.name] = dataclasses.replace(
                    build, annotations={**build.annotations, **action.annotations}
                )


TestImageSequences = Image.TestCase
TestImageSequences.settings = generated.search(stateful_step_count=30)
