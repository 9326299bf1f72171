"""The files a build reads besides its template: provisioner scripts, playbooks and uploaded
files, inline or from ConfigMaps, each under a deterministic name in the build's inputs
directory (a ConfigMap the ImageBuild owns, mounted into the Job)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ..api.goldenimage import GoldenImageSpec, ShellProvisioner
from ..api.types import Content

USER_TEMPLATE = "user-template.pkr.hcl"


@dataclass(frozen=True)
class Ref:
    """A ConfigMap key a recipe reads."""

    config_map: str
    key: str

    def __str__(self) -> str:
        return f"{self.config_map}/{self.key}"


@dataclass(frozen=True)
class InputFile:
    name: str  # file name in the inputs directory (a valid ConfigMap key)
    content: Content


def script_name(index: int, shell: ShellProvisioner) -> str:
    return f"p{index}-{'inline' if shell.inline is not None else 'script'}.sh"


def playbook_name(index: int) -> str:
    return f"p{index}-playbook.yml"


def requirements_name(index: int) -> str:
    return f"p{index}-requirements.yml"


def file_name(index: int) -> str:
    return f"p{index}-file"


def inline_script(lines: Sequence[str]) -> str:
    """Inline commands as the script Packer would have run: /bin/sh -e, one command a line."""
    return "#!/bin/sh -e\n" + "\n".join(lines) + "\n"


def files(recipe: GoldenImageSpec) -> Iterator[InputFile]:
    """Every input file of the recipe, in provisioner order."""
    if recipe.template is not None:
        yield InputFile(USER_TEMPLATE, Content(config_map_ref=recipe.template.config_map_ref))
    for index, step in enumerate(recipe.provisioners):
        if step.shell is not None and step.shell.inline is not None:
            yield InputFile(script_name(index, step.shell), Content(inline=inline_script(step.shell.inline)))
        elif step.shell is not None and step.shell.script is not None:
            yield InputFile(script_name(index, step.shell), step.shell.script)
        elif step.ansible is not None:
            yield InputFile(playbook_name(index), step.ansible.playbook)
            if step.ansible.galaxy_requirements is not None:
                yield InputFile(requirements_name(index), step.ansible.galaxy_requirements)
        elif step.file is not None:
            yield InputFile(file_name(index), step.file.source)


def refs(recipe: GoldenImageSpec) -> list[Ref]:
    """The ConfigMap keys the recipe reads, without duplicates."""
    found: dict[str, Ref] = {}
    for item in files(recipe):
        if item.content.config_map_ref is not None:
            ref = Ref(item.content.config_map_ref.name, item.content.config_map_ref.key)
            found.setdefault(str(ref), ref)
    return list(found.values())


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class MissingInputError(LookupError):
    pass


def resolve(recipe: GoldenImageSpec, contents: Mapping[str, str]) -> dict[str, str]:
    """File name -> text for every input, reading ConfigMap keys from `contents` (by "name/key")."""
    out = {}
    for item in files(recipe):
        if item.content.inline is not None:
            out[item.name] = item.content.inline
            continue
        assert item.content.config_map_ref is not None
        ref = f"{item.content.config_map_ref.name}/{item.content.config_map_ref.key}"
        if ref not in contents:
            raise MissingInputError(f"ConfigMap key {ref} not found")
        out[item.name] = contents[ref]
    return out
