"""Every module of the package imports (catches a wrong import in code no other test reaches)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import goldenimage

MODULES = [m.name for m in pkgutil.walk_packages(goldenimage.__path__, "goldenimage.")]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_the_stdlib_operator_module_is_not_shadowed() -> None:
    import operator

    assert hasattr(operator, "itemgetter")
