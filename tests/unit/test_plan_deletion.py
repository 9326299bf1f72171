"""The deletion planner and the result finalizer: a build being deleted lets go of every Pod the
finalizer holds before its own finalizer goes, whatever else the clean-up does or skips."""

from __future__ import annotations

from typing import Any

import pytest

from goldenimage.api.labels import FINALIZER
from goldenimage.api.resources import ImageBuild
from goldenimage.reconcile import deletion
from goldenimage.reconcile.actions import ReleaseBuildPods, ReleasePods, RemoveFinalizer


def build() -> ImageBuild:
    recipe: dict[str, Any] = {
        "targets": [{"name": "aws-eu", "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}}],
        "provisioners": [{"shell": {"inline": ["true"]}}],
    }
    return ImageBuild.model_validate(
        {
            "metadata": {"name": "web-base-7", "namespace": "platform", "uid": "1a2b", "finalizers": [FINALIZER]},
            "spec": {
                "image": "web-base",
                "version": 7,
                "fingerprint": "sha256:" + "a" * 64,
                "reason": "Initial",
                "recipe": recipe,
            },
        }
    )


@pytest.mark.parametrize(
    "observed",
    [
        deletion.DeletionObservation(jobs=["j"], held_pods=["p1", "p2"]),
        deletion.DeletionObservation(held_pods=["p1", "p2"], skip_cleanup=True),
        deletion.DeletionObservation(held_pods=["p1", "p2"], invalid="bad"),
    ],
    ids=["clean-up", "skip-cleanup", "invalid"],
)
def test_every_held_pod_is_let_go_before_the_builds_finalizer(observed: deletion.DeletionObservation) -> None:
    made = None if observed.invalid else build()
    actions = deletion.plan(made, observed).actions
    (release,) = [a for a in actions if isinstance(a, ReleasePods)]
    assert release == ReleaseBuildPods(("p1", "p2"))
    # Not deferred to after a status write (a deletion writes none): before the finalizer goes.
    assert ReleaseBuildPods.after_status is False
    assert actions.index(release) < actions.index(RemoveFinalizer())


def test_pods_still_stopping_are_let_go_at_once_and_the_build_waits_for_them() -> None:
    plan = deletion.plan(build(), deletion.DeletionObservation(jobs=["j"], running_pods=["p1"], held_pods=["p1"]))
    assert ReleaseBuildPods(("p1",)) in plan.actions
    assert RemoveFinalizer() not in plan.actions and plan.requeue_after is not None


def test_nothing_to_let_go_plans_no_release() -> None:
    actions = deletion.plan(build(), deletion.DeletionObservation()).actions
    assert not [a for a in actions if isinstance(a, ReleasePods)]
