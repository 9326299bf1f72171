"""Messages the operator composes are bounded when written: a status that carries them is one the
API server stores, however long the parts they were made of."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from goldenimage.api.conditions import set_condition
from goldenimage.api.imagebuild import CheckResult, ImageBuildStatus, TargetStatus, ValidationResult
from goldenimage.api.imagechannel import ChannelEntry, ImageChannelStatus

NOW = datetime(2026, 11, 21, tzinfo=UTC)


@given(st.text(min_size=0, max_size=9000))
def test_long_messages_are_clipped_in_what_is_written(text: str) -> None:
    check = CheckResult(name="ssh", passed=False).model_copy(update={"message": text})
    validation = ValidationResult(target="a", region="r", artifact="x", phase="Failed").model_copy(
        update={"message": text, "checks": [check]}
    )
    target = TargetStatus(name="a", cloud="aws", phase="Failed", attempt=1).model_copy(update={"message": text})
    build = ImageBuildStatus(targets=[target], validation=[validation])
    written = build.model_dump(mode="json", by_alias=True)
    ImageBuildStatus.model_validate(written)  # the limits of the CRD are the models' own
    assert len(written["targets"][0]["message"]) <= 4096
    assert len(written["validation"][0]["checks"][0]["message"]) <= 1024
    if len(text) <= 1024:
        assert written["validation"][0]["checks"][0]["message"] == text  # short text is kept as is
    entry = ChannelEntry(version=1, build="web-1", promoted_at=NOW, reason="Revoked").model_copy(
        update={"message": text}
    )
    ImageChannelStatus.model_validate(ImageChannelStatus(current=entry).model_dump(mode="json", by_alias=True))


def test_a_condition_message_of_any_length_is_written_within_its_limit() -> None:
    conditions = set_condition([], "Ready", "False", "BuildFailed", "x" * 100_000, now=NOW)
    written = ImageBuildStatus(conditions=conditions).model_dump(mode="json", by_alias=True)
    assert len(written["conditions"][0]["message"]) == 32768
    ImageBuildStatus.model_validate(written)
