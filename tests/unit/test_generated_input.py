"""Generated hostile input: every example GoldenImage mutated in one place at a time (a string
replaced by injection text, odd unicode, control characters or a huge value; a key of a map
replaced the same way; a value replaced by another type or an out-of-bounds number). Each mutant
is either refused by the models with an error that names its field, or goes all the way through
what the operator does with a spec: the ImageBuild planner renders its templates and input
files, and the build Jobs are made, without any exception, and no user text leaves its quoting
in a rendered template (the template's shape outside its strings is the original's, and it
interpolates nothing more than the original did).

The corpus in tests/data/invalid-objects.yaml stays: it holds the cases written by hand.
`GOLDENIMAGE_EXAMPLES=10000` runs more examples than the default.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import ValidationError

from goldenimage.api.imagebuild import ImageBuildSpec
from goldenimage.api.labels import FINALIZER
from goldenimage.api.resources import GoldenImage, ImageBuild, ObjectMeta
from goldenimage.config import Config
from goldenimage.kube import jobs
from goldenimage.packer import inputs
from goldenimage.reconcile.actions import CreateInputs, CreateJob
from goldenimage.reconcile.imagebuild import BuildObservation, BuildSettings, plan
from support import generated, mutants

CONFIG = Config(runner_image="ghcr.io/goldenimage/packer-runner:0.1.0")
NOW = datetime(2026, 11, 21, tzinfo=UTC)
DOCUMENTS = mutants.documents()
Path = mutants.Path


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], Path, Any]:
    doc = draw(st.sampled_from(DOCUMENTS))
    leaves = [(p, v) for p, v in mutants.leaves(doc["spec"]) if p]
    path, old = draw(st.sampled_from(leaves))
    if isinstance(old, str) or isinstance(path[-1], tuple):
        new = draw(
            st.one_of(
                st.sampled_from(mutants.HOSTILE), st.text(min_size=1, max_size=80), st.sampled_from(mutants.OTHER_TYPES)
            )
        )
    elif isinstance(old, bool | int):
        new = draw(st.one_of(st.sampled_from(mutants.OTHER_TYPES), st.integers(), st.sampled_from(mutants.HOSTILE)))
    else:
        new = draw(st.one_of(st.sampled_from(mutants.OTHER_TYPES), st.sampled_from(mutants.HOSTILE)))
    return mutants.replace(doc, path, new), path, new


# -- what a rendered template is made of ------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_COMMENT = re.compile(r"#[^\n]*")


def _strings(text: str) -> list[str]:
    return _STRING.findall(text)


def skeleton(text: str) -> str:
    """The template outside its strings and comments, without white space: its shape."""
    out, at = [], 0
    for match in _STRING.finditer(text):
        out.append(_COMMENT.sub("", text[at : match.start()]))
        out.append('""')
        at = match.end()
    out.append(_COMMENT.sub("", text[at:]))
    # A long list is written one item per line, with a trailing comma: the same shape.
    return re.sub(r",([\]}])", r"\1", re.sub(r"\s+", "", "".join(out)))


def interpolations(text: str) -> int:
    """`${` and `%{` that HCL would evaluate (an escaped one is written `$${` or `%%{`)."""
    return sum(len(re.findall(r"(?<![$%])[$%]\{", s.replace("$${", "").replace("%%{", ""))) for s in _strings(text))


def _contents(image: GoldenImage) -> dict[str, str]:
    return {str(r): "- hosts: all\n" for r in inputs.refs(image.spec)}


def _carried_out(image: GoldenImage) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """What the operator makes of the spec: the inputs (templates, files) and the build Jobs."""
    build = ImageBuild(
        metadata=ObjectMeta(name="web-base-7", namespace="platform", uid="1a2b3c4d-0000", finalizers=[FINALIZER]),
        spec=ImageBuildSpec(
            image="web-base", version=7, fingerprint="sha256:" + "a" * 64, reason="Initial", recipe=image.spec
        ),
    )
    observed = BuildObservation(now=NOW, inputs_exist=False, input_contents=_contents(image))
    result = plan(build, observed, BuildSettings())
    data = dict(next((a.data for a in result.actions if isinstance(a, CreateInputs)), {}))
    targets = {t.name: t for t in image.spec.targets}
    made = [
        jobs.build_job(build, targets[a.target], a.attempt, CONFIG) for a in result.actions if isinstance(a, CreateJob)
    ]
    for job in made:
        json.dumps(job)  # what goes to the API server
    return dict(data), made


BASELINE = {d["metadata"]["name"]: _carried_out(GoldenImage.model_validate(d))[0] for d in DOCUMENTS}


def test_the_examples_render_without_an_escape() -> None:
    for name, data in BASELINE.items():
        templates = [k for k in data if k.endswith(".pkr.hcl")]
        assert templates, name
        for key in templates:
            assert skeleton(data[key]) and interpolations(data[key]) > 0, (name, key)


def test_a_string_leaving_its_quotes_changes_the_shape() -> None:
    """The check below can fail: text that closes its string does change the skeleton."""
    quoted = 'tags = {\n  a = "x"\n}\n'
    broken = 'tags = {\n  a = "x"\n}\nbuild {\n  sources = ["x"]\n}\n#"\n}\n'
    assert skeleton(quoted) != skeleton(broken)
    assert interpolations('a = "$${x}"') == 0 and interpolations('a = "${x}"') == 1


@generated.search(300)
@given(mutated())
def test_a_mutant_is_refused_with_its_field_named_or_carried_out_safely(case: tuple[dict[str, Any], Path, Any]) -> None:
    doc, path, new = case
    try:
        image = GoldenImage.model_validate(doc)
    except ValidationError as refused:
        for error in refused.errors():
            assert error["loc"] and error["msg"], error
        event("refused by the models")
        return
    data, made = _carried_out(image)
    event("carried out" if data else "blocked with a condition")
    baseline = BASELINE[doc["metadata"]["name"]]
    if not data:
        # Nothing rendered: the planner said why (blocked), which is a condition, not a crash.
        return
    for key, text in data.items():
        if not key.endswith(".pkr.hcl") or key not in baseline:
            continue
        if not isinstance(new, str) or not new:
            continue  # another type or an emptied value may change what is configured: no crash is the point
        assert skeleton(text) == skeleton(baseline[key]), (path, new, key)
        assert interpolations(text) == interpolations(baseline[key]), (path, new, key)
    assert made, "a valid spec plans its build Jobs"


@pytest.mark.parametrize("value", mutants.HOSTILE[:-1], ids=range(len(mutants.HOSTILE) - 1))
def test_every_hostile_text_stays_inside_its_quotes_in_tags_and_env(value: str) -> None:
    """The fields most likely to carry free text, one by one, with every hostile value."""

    def rendered(note: str) -> dict[str, str]:
        doc = copy.deepcopy(next(d for d in DOCUMENTS if d["metadata"]["name"] == "web-base"))
        doc["spec"].setdefault("tags", {})["Note"] = note
        first = doc["spec"]["provisioners"][0]
        if "shell" in first:
            first["shell"].setdefault("env", {})["NOTE"] = note
        return _carried_out(GoldenImage.model_validate(doc))[0]

    plain = rendered("x")
    try:
        data = rendered(value)
    except ValidationError:
        return
    for key, text in data.items():
        if key.endswith(".pkr.hcl"):
            assert skeleton(text) == skeleton(plain[key])
            assert interpolations(text) == interpolations(plain[key])
