"""Every object of the invalid corpus is refused by the models with a message naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from goldenimage.api import RESOURCES
from goldenimage.api.messages import describe
from support import corpus

CASES = corpus.load()
KINDS = {r.definition.kind: r for r in RESOURCES}


def test_corpus_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.object["kind"] for c in CASES} == set(KINDS)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_models_refuse(case: corpus.Case) -> None:
    with pytest.raises(ValidationError) as caught:
        KINDS[case.object["kind"]].model_validate(case.object)
    problems = describe(caught.value)
    matching = [(path, msg) for path, msg in problems if case.model in msg]
    assert matching, f"no error says {case.model!r}: {problems}"
    # The error names the field (a map key's error names the key below it); rules on the whole
    # object name it in their message.
    paths = {case.field if path == "(object)" and case.field in msg else path for path, msg in matching}
    assert any(p == case.field or p.startswith(case.field + ".") for p in paths), matching
