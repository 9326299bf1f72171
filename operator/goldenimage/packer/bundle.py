"""Everything a build's Jobs read, as one ConfigMap's data: the rendered template of every
target and the input files (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from ..api.goldenimage import GoldenImageSpec
from ..api.identity import BuildIdentity
from . import inputs
from .render import Settings, render_target, template_name

# A ConfigMap holds at most 1 MiB; leave room for metadata.
LIMIT = 1_000_000
# The frozen recipe, for the validation Jobs.
RECIPE = "recipe.json"


class BundleTooLargeError(ValueError):
    pass


def bundle(
    recipe: GoldenImageSpec,
    build: BuildIdentity,
    *,
    sources: Mapping[str, str],
    contents: Mapping[str, str],
    settings: Settings,
) -> dict[str, str]:
    """File name -> content; `contents` holds the ConfigMap keys the recipe reads ("name/key")."""
    data = inputs.resolve(recipe, contents)
    data[RECIPE] = recipe.model_dump_json(by_alias=True, exclude_none=True)
    if recipe.template is None:
        for target in recipe.targets:
            data[template_name(target)] = render_target(
                recipe, target, build, source=sources.get(target.name), settings=settings
            )
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > LIMIT:
        raise BundleTooLargeError(f"the build's templates and input files take {size} bytes; a ConfigMap holds 1 MiB")
    return data
