"""Names of what the operator creates are unambiguous for any builds, targets, regions, attempts
and kinds of Job: two different Jobs never share a name, whatever the names tenants choose."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from goldenimage.api import names

Job = tuple[str, str, int, str, str, int]  # kind, image, version, target, region, attempt

# DNS labels as the API admits them for images, targets and regions.
LABEL = st.from_regex(r"[a-z0-9v]([a-z0-9v-]{0,12}[a-z0-9v])?", fullmatch=True)
JOB = st.one_of(
    st.tuples(st.just("build"), LABEL, st.integers(1, 99), LABEL, st.just(""), st.integers(1, 9)),
    st.tuples(st.just("validation"), LABEL, st.integers(1, 99), LABEL, LABEL, st.integers(1, 9)),
)


def name_of(job: Job) -> str:
    kind, image, version, target, region, attempt = job
    build = names.build(image, version)
    if kind == "build":
        return names.build_job(build, target, attempt)
    return names.validation_job(build, target, region, attempt)


def readable(job: Job) -> str:
    kind, image, version, target, region, attempt = job
    middle = f"{target}-v-{region}" if kind == "validation" else target
    return f"{image}-{version}-{middle}-{attempt}"


def _label(tokens: list[str]) -> str | None:
    text = "-".join(tokens)
    return text if tokens and all(tokens) else None


def readings(text: str) -> Iterator[Job]:
    """Every Job whose readable name is `text`: what a name without more than that could mean."""
    tokens = text.split("-")
    for i in range(1, len(tokens)):
        image, version = _label(tokens[:i]), tokens[i]
        if image is None or not version.isdigit() or not tokens[-1].isdigit():
            continue
        rest = tokens[i + 1 : -1]
        if (target := _label(rest)) is not None:
            yield ("build", image, int(version), target, "", int(tokens[-1]))
        for j, token in enumerate(rest):
            target, region = _label(rest[:j]), _label(rest[j + 1 :])
            if token == "v" and target is not None and region is not None:
                yield ("validation", image, int(version), target, region, int(tokens[-1]))


@st.composite
def look_alikes(draw: st.DrawFn) -> tuple[Job, Job]:
    """A Job and another Job with the same readable name when there is one (else itself)."""
    job = draw(JOB)
    others = sorted(set(readings(readable(job))) - {job})
    return job, draw(st.sampled_from(others)) if others else job


@given(look_alikes())
def test_jobs_whose_readable_names_coincide_still_get_their_own(pair: tuple[Job, Job]) -> None:
    a, b = pair
    assert (name_of(a) == name_of(b)) == (a == b), pair


@given(st.lists(JOB, min_size=2, max_size=40, unique=True))
def test_different_jobs_never_share_a_name(jobs: list[Job]) -> None:
    assert len({name_of(job) for job in jobs}) == len(jobs)


@given(JOB)
def test_every_job_name_fits_a_label_and_starts_readable(job: Job) -> None:
    name = name_of(job)
    assert len(name) <= names.LABEL_MAX
    assert name[0].isalnum() and name[-1].isalnum()
    assert name.startswith(job[1])


def test_the_names_that_once_collided_differ() -> None:
    # A target named like another target's validation in a region.
    assert names.build_job("web-1", "eu-v-eu-west-1", 1) != names.validation_job("web-1", "eu", "eu-west-1", 1)
    # Image "web-1" version 2 and image "web" version 1 with a target "2-t".
    assert names.build_job(names.build("web-1", 2), "t", 1) != names.build_job(names.build("web", 1), "2-t", 1)
