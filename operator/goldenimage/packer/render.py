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
from typing import Literal

from ..api.goldenimage import GoldenImageSpec, Provisioner, Target
from ..kube.names import fit
from . import hcl, inputs, tags
from .generalize import AZURE as GENERALIZE_AZURE
from .generalize import LINUX as GENERALIZE_LINUX
from .generalize import secret_scan
from .hcl import Block, Expr, render

ATTEMPT = Expr("var.attempt")
TAGS = Expr("local.resource_tags")


def _template(text: str) -> Expr:
    """A string with our own `${...}` interpolations (never user text)."""
    return Expr(hcl.template(text))


@dataclass(frozen=True)
class BuildContext:
    namespace: str
    image: str
    build: str  # the ImageBuild's name, <image>-<version>
    version: int
    build_id: str  # value of the goldenimage.io/build-id tag: <build>-<uid prefix>


@dataclass(frozen=True)
class Settings:
    # "none": build without connecting to the instance (clouds emulated locally, where instances
    # never boot). Provisioners are still rendered and validated, but not run.
    communicator: Literal["ssh", "none"] = "ssh"


def template_name(target: Target) -> str:
    return f"{target.name}.pkr.hcl"


def source_type(target: Target) -> str:
    return {"aws": "amazon-ebs", "gcp": "googlecompute", "azure": "azure-arm"}[target.cloud]


def source_ref(target: Target) -> str:
    return f"{source_type(target)}.{target.name}"


def resource_tags(recipe: GoldenImageSpec, target: Target, ctx: BuildContext) -> dict[str, object]:
    """User tags plus the operator's, spelled for the target's cloud; the attempt is a variable."""
    fixed = {
        **recipe.tags,
        tags.BUILD_ID: ctx.build_id,
        tags.IMAGE: ctx.image,
        tags.NAMESPACE: ctx.namespace,
        tags.VERSION: str(ctx.version),
        tags.TARGET: target.name,
        tags.MANAGED_BY: tags.MANAGER,
    }
    out: dict[str, object] = dict(tags.for_cloud(target.cloud, fixed))
    out[tags.key_for(target.cloud, tags.ATTEMPT)] = ATTEMPT
    return out


def temporary_name(ctx: BuildContext, target: Target, limit: int = 200) -> str:
    """The name of a temporary resource without a tag (an AWS key pair, a GCP instance): per
    build and target, so that leftovers can be found by name; the attempt is appended."""
    return fit(f"packer-{ctx.build_id}-{target.name}", limit)


def artifact_name(ctx: BuildContext) -> Expr:
    """`<build id>-a<attempt>`: unique per attempt, so a retry never collides with a leftover."""
    return _template(f"{ctx.build_id}-a${{var.attempt}}")


def render_target(
    recipe: GoldenImageSpec,
    target: Target,
    ctx: BuildContext,
    *,
    source: str | None,
    settings: Settings = Settings(),
) -> str:
    """The template for `target`. `source` is the source image the operator resolved, if any."""
    blocks = [
        *_variables(recipe, target),
        Block("locals", attributes={"resource_tags": resource_tags(recipe, target, ctx)}),
        _source(target, ctx, source, settings),
        _build(recipe, target, settings),
    ]
    header = (
        f"# Rendered by the GoldenImage operator for {ctx.namespace}/{ctx.build}, target {target.name}.\n"
        f"# Build id {ctx.build_id}. Do not edit: the ImageBuild's recipe is the source.\n\n"
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
    if target.cloud == "aws":
        blocks.append(
            Block(
                "variable",
                ("aws_endpoint",),
                {"type": Expr("string"), "default": ""},
                comment="Custom EC2 endpoint.",
            )
        )
    if target.cloud == "azure":
        for name, env in (
            ("client_id", "ARM_CLIENT_ID"),
            ("client_secret", "ARM_CLIENT_SECRET"),
            ("tenant_id", "ARM_TENANT_ID"),
        ):
            attrs: dict[str, object] = {"type": Expr("string"), "default": Expr(f'env("{env}")')}
            if name == "client_secret":
                attrs["sensitive"] = True
            blocks.append(Block("variable", (f"azure_{name}",), attrs))
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


def _communicator(settings: Settings, username: str) -> dict[str, object]:
    if settings.communicator == "none":
        return {"communicator": "none"}
    return {"communicator": "ssh", "ssh_username": username, "ssh_timeout": "20m"}


def _source(target: Target, ctx: BuildContext, source: str | None, settings: Settings) -> Block:
    labels = (source_type(target), target.name)
    description = f"{ctx.image} version {ctx.version} (build {ctx.build_id})"
    if target.aws is not None:
        aws = target.aws
        attrs: dict[str, object] = {"region": aws.region}
        if source is not None or aws.source.ami_id is not None:
            attrs["source_ami"] = source or aws.source.ami_id
        amis = Block("source_ami_filter")
        if "source_ami" not in attrs and aws.source.ami_filter is not None:
            f = aws.source.ami_filter
            amis.attributes = {
                "filters": {"name": f.name, **f.filters},
                "owners": list(f.owners),
                "most_recent": f.most_recent,
            }
        attrs |= {
            "instance_type": aws.instance_type,
            "ami_name": artifact_name(ctx),
            "ami_description": description,
            "ami_regions": list(aws.copy_to_regions) or None,
            "shutdown_behavior": "terminate",  # an orphaned builder ends itself when it shuts down
            "subnet_id": aws.subnet_id,
            "security_group_ids": list(aws.security_group_ids) or None,
            "iam_instance_profile": aws.iam_instance_profile,
            "custom_endpoint_ec2": Expr("var.aws_endpoint"),
        }
        if aws.share_with is not None:
            # Accounts here; organizations and OUs by the runner after the build (Packer 1.6.6
            # knows no ami_org_arns).
            attrs["ami_users"] = list(aws.share_with.accounts) or None
        if aws.encryption is not None:
            attrs["encrypt_boot"] = aws.encryption.encrypted
            attrs["kms_key_id"] = aws.encryption.kms_key_id
        attrs |= {"tags": TAGS, "snapshot_tags": TAGS, "run_tags": TAGS, "run_volume_tags": TAGS}
        attrs["temporary_key_pair_name"] = _template(f"{temporary_name(ctx, target)}-a${{var.attempt}}")
        attrs |= _communicator(settings, aws.ssh_username)
        block = Block("source", labels, attrs)
        if amis.attributes:
            block.add(amis)
        return block
    if target.gcp is not None:
        gcp = target.gcp
        attrs = {"project_id": gcp.project, "zone": gcp.zone, "machine_type": gcp.machine_type}
        if source is not None or gcp.source.image is not None:
            attrs["source_image"] = source or gcp.source.image
        else:
            attrs["source_image_family"] = gcp.source.family
        if gcp.source.project is not None:
            attrs["source_image_project_id"] = [gcp.source.project]
        attrs |= {
            "image_name": artifact_name(ctx),
            "image_description": description,
            "image_family": gcp.family,
            "image_labels": TAGS,
            "labels": TAGS,
            "image_storage_locations": list(gcp.storage_locations) or None,
            "network": gcp.network,
            "subnetwork": gcp.subnetwork,
            "disk_size": gcp.disk_size_gb,
            "instance_name": _template(f"{temporary_name(ctx, target, limit=56)}-a${{var.attempt}}"),
        }
        attrs |= _communicator(settings, gcp.ssh_username)
        return Block("source", labels, attrs)
    assert target.azure is not None
    az = target.azure
    gallery = az.gallery
    attrs = {
        "subscription_id": az.subscription_id,
        # A service principal from the credentials Secret, else the workload's managed identity.
        "client_id": Expr("var.azure_client_id"),
        "client_secret": Expr("var.azure_client_secret"),
        "tenant_id": Expr("var.azure_tenant_id"),
        "location": az.location,
        "vm_size": az.vm_size,
        "os_type": az.os_type,
    }
    if az.source.marketplace is not None:
        m = az.source.marketplace
        attrs |= {
            "image_publisher": m.publisher,
            "image_offer": m.offer,
            "image_sku": m.sku,
            "image_version": m.version,
        }
    attrs |= {
        "managed_image_name": artifact_name(ctx),
        "managed_image_resource_group_name": az.resource_group,
        "azure_tags": TAGS,
        **_communicator(settings, az.ssh_username),
    }
    block = Block("source", labels, attrs)
    if az.source.gallery_image_version_id is not None:
        block.add(Block("shared_image_gallery", attributes=gallery_image_version(az.source.gallery_image_version_id)))
    block.add(
        Block(
            "shared_image_gallery_destination",
            attributes={
                "subscription": az.subscription_id,
                "resource_group": gallery.resource_group or az.resource_group,
                "gallery_name": gallery.name,
                "image_name": gallery.image_definition,
                # Gallery versions are Major.Minor.Patch: the image version, then the attempt.
                "image_version": _template(f"{ctx.version}.0.${{var.attempt}}"),
                "replication_regions": [az.location, *gallery.replication_regions],
            },
        )
    )
    return block


def gallery_image_version(resource_id: str) -> dict[str, object]:
    """The parts Packer 1.6.6 wants of a gallery image version's resource id."""
    parts = resource_id.strip("/").split("/")
    fields = {parts[i].lower(): parts[i + 1] for i in range(0, len(parts) - 1, 2)}
    return {
        "subscription": fields["subscriptions"],
        "resource_group": fields["resourcegroups"],
        "gallery_name": fields["galleries"],
        "image_name": fields["images"],
        "image_version": fields["versions"],
    }


def _build(recipe: GoldenImageSpec, target: Target, settings: Settings) -> Block:
    build = Block("build", attributes={"name": target.name, "sources": [f"source.{source_ref(target)}"]})
    steps = [block for index, step in enumerate(recipe.provisioners) for block in _provisioner(index, step)]
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
                    "inline": [*GENERALIZE_LINUX, *(GENERALIZE_AZURE if target.azure is not None else ())],
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


def _provisioner(index: int, step: Provisioner) -> list[Block]:
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
