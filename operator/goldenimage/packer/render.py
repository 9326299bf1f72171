"""Renders the Packer HCL2 template of one target of a build (pure).

One template per target, written for Debian's Packer 1.6.6 and current Packer alike (no
`packer` block, no `required_plugins`). Every resource Packer creates, temporary or final,
carries the build's tags; image names contain the build id and the attempt; the provisioners run
in order, the generalize step last; the `manifest` post-processor records the artifacts of this
run. Secret variables are `sensitive` Packer variables whose values arrive as PKR_VAR_ env.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..api import labels
from ..api.goldenimage import GoldenImageSpec, Provisioner, Target
from ..api.identity import BuildIdentity
from ..api.names import fit
from ..clouds import registry
from ..clouds.base import Communicator, SourceContext
from ..hcl import Block, Expr, render, template
from . import inputs
from .generalize import LINUX as GENERALIZE_LINUX
from .generalize import secret_scan

ATTEMPT = Expr("var.attempt")
TAGS = Expr("local.resource_tags")


def _template(text: str) -> Expr:
    """A string with our own `${...}` interpolations (never user text)."""
    return Expr(template(text))


@dataclass(frozen=True)
class Settings:
    # "none": build without connecting to the instance (clouds emulated locally, where instances
    # never boot). Provisioners are still rendered and validated, but not run.
    communicator: Communicator = "ssh"


def template_name(target: Target) -> str:
    return f"{target.name}.pkr.hcl"


def source_ref(target: Target) -> str:
    return f"{registry.of(target).builder}.{target.name}"


def resource_tags(recipe: GoldenImageSpec, target: Target, build: BuildIdentity) -> dict[str, object]:
    """User tags plus the operator's, spelled for the target's cloud; the attempt is a variable."""
    kind = registry.of(target)
    fixed = {
        **recipe.tags,
        labels.BUILD_ID: build.build_id,
        labels.IMAGE: build.image,
        labels.NAMESPACE: build.namespace,
        labels.VERSION: str(build.version),
        labels.TARGET: target.name,
        labels.MANAGED_BY: labels.MANAGER,
    }
    out: dict[str, object] = dict(kind.tags(fixed))
    out[kind.tag_key(labels.ATTEMPT)] = ATTEMPT
    return out


def temporary_name(build: BuildIdentity, target: Target, limit: int = 200) -> str:
    """The name of a temporary resource without a tag (an AWS key pair, a GCP instance): per
    build and target, so that leftovers can be found by name; the attempt is appended."""
    return fit(f"packer-{build.build_id}-{target.name}", limit)


def artifact_name(build: BuildIdentity, target: Target) -> Expr:
    """`<build id>-<target>-a<attempt>`: unique per target, since two targets may build in one
    region and clouds refuse a second image of a name there, and per attempt, so a retry never
    collides with a leftover. Fitted so that GCE's 63 characters hold it with the attempt."""
    return _template(f"{fit(f'{build.build_id}-{target.name}', 56)}-a${{var.attempt}}")


def source_context(target: Target, build: BuildIdentity, source: str | None, settings: Settings) -> SourceContext:
    def named(limit: int) -> Expr:
        return _template(f"{temporary_name(build, target, limit)}-a${{var.attempt}}")

    return SourceContext(
        build=build,
        source_image=source,
        artifact_name=artifact_name(build, target),
        temporary_name=named,
        tags=TAGS,
        description=f"{build.image} version {build.version} (build {build.build_id})",
        communicator=settings.communicator,
    )


def render_target(
    recipe: GoldenImageSpec,
    target: Target,
    build: BuildIdentity,
    *,
    source: str | None,
    settings: Settings = Settings(),
) -> str:
    """The template for `target`. `source` is the source image the operator resolved, if any."""
    blocks = [
        *_variables(recipe, target),
        Block("locals", attributes={"resource_tags": resource_tags(recipe, target, build)}),
        registry.of(target).source(target, source_context(target, build, source, settings)),
        _build(recipe, target, settings),
    ]
    header = (
        f"# Rendered by the GoldenImage operator for {build.namespace}/{build.build}, target {target.name}.\n"
        f"# Build id {build.build_id}. Do not edit: the ImageBuild's recipe is the source.\n\n"
    )
    return header + render(blocks)


def _variables(recipe: GoldenImageSpec, target: Target) -> list[Block]:
    blocks = [
        Block("variable", ("attempt",), {"type": Expr("string"), "default": "1"}),
        Block(
            "variable",
            ("inputs_dir",),
            {"type": Expr("string")},
            comment="Where the build's input files are.",
        ),
        Block("variable", ("manifest_path",), {"type": Expr("string")}),
    ]
    blocks += registry.of(target).variables(target)
    for secret in recipe.secret_variables:
        blocks.append(
            Block(
                "variable",
                (secret.name,),
                {"type": Expr("string"), "sensitive": True},
                comment=f"From Secret {secret.secret_key_ref.name}, key {secret.secret_key_ref.key}.",
            )
        )
    return blocks


def _build(recipe: GoldenImageSpec, target: Target, settings: Settings) -> Block:
    build = Block("build", attributes={"name": target.name, "sources": [f"source.{source_ref(target)}"]})
    user = registry.of(target).login_user(target)
    steps = [block for index, step in enumerate(recipe.provisioners) for block in _provisioner(index, step, user)]
    if recipe.secret_variables:
        steps.append(
            Block(
                "provisioner",
                ("shell",),
                {
                    "inline": secret_scan([s.name for s in recipe.secret_variables]),
                    "environment_vars": [
                        _template(f"GOLDENIMAGE_SECRET_{i}=${{var.{s.name}}}")
                        for i, s in enumerate(recipe.secret_variables)
                    ],
                    "execute_command": "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'",
                },
                comment="Fails the build if a secret variable's value was written into the image.",
            )
        )
    if recipe.generalize:
        steps.append(
            Block(
                "provisioner",
                ("shell",),
                {
                    "inline": [*GENERALIZE_LINUX, *registry.of(target).generalize(target)],
                    "execute_command": "chmod +x {{ .Path }}; sudo sh '{{ .Path }}'",
                },
                comment="Generalize: no machine identity, host keys, authorized keys or shell history in the image.",
            )
        )
    for step in steps:
        if settings.communicator == "none":
            # Nothing to connect to: the provisioners are rendered and validated, not run.
            step.attributes = {"except": [source_ref(target)], **step.attributes}
        build.add(step)
    build.add(Block("post-processor", ("manifest",), {"output": Expr("var.manifest_path"), "strip_path": True}))
    return build


def _inputs_path(name: str) -> str:
    return "${var.inputs_dir}/" + name


def _provisioner(index: int, step: Provisioner, user: str) -> list[Block]:
    if step.shell is not None:
        shell = step.shell
        attrs: dict[str, object] = {}
        # Inline commands too run from a file: Packer would read `{{ }}` in inline text as its own
        # template syntax, and nothing a user writes may be interpreted.
        attrs["script"] = _template(_inputs_path(inputs.script_name(index, shell)))
        env = [f"{k}={v}" for k, v in shell.env.items()]
        env_exprs: list[object] = [_template(f"{name}=${{var.{var}}}") for name, var in shell.secret_env.items()]
        if env or env_exprs:
            attrs["environment_vars"] = [*env, *env_exprs]
        return [Block("provisioner", ("shell",), attrs)]
    if step.ansible is not None:
        ansible = step.ansible
        attrs = {
            "playbook_file": _template(_inputs_path(inputs.playbook_name(index))),
            # Packer 1.6.6 would tell Ansible the local user's name, not the one it logs in as.
            "user": user,
            "ansible_env_vars": [
                "ANSIBLE_HOST_KEY_CHECKING=False",
                "ANSIBLE_NOCOLOR=True",
                # Packer's SSH proxy for Ansible offers ssh-rsa, which current OpenSSH refuses.
                "ANSIBLE_SSH_ARGS=-o HostKeyAlgorithms=+ssh-rsa -o PubkeyAcceptedKeyTypes=+ssh-rsa",
            ],
        }
        if ansible.extra_vars:
            attrs["extra_arguments"] = ["--extra-vars", json.dumps(dict(ansible.extra_vars), sort_keys=True)]
        if ansible.galaxy_requirements is not None:
            attrs["galaxy_file"] = _template(_inputs_path(inputs.requirements_name(index)))
        return [Block("provisioner", ("ansible",), attrs)]
    assert step.file is not None
    staged = f"/tmp/goldenimage-p{index}"
    return [
        Block(
            "provisioner",
            ("file",),
            {"source": _template(_inputs_path(inputs.file_name(index))), "destination": staged},
        ),
        Block(
            "provisioner",
            ("shell",),
            {
                "inline": [
                    f"sudo install -D -m {step.file.mode} {staged} {_shell_quote(step.file.destination)}",
                    f"rm -f {staged}",
                ]
            },
        ),
    ]


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
