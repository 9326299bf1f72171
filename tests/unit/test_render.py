"""Packer templates rendered from the examples: snapshots, and the properties every template has."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from goldenimage import hcl
from goldenimage.api.goldenimage import SUPPLIED_VARIABLES, GoldenImageSpec
from goldenimage.api.identity import BuildIdentity
from goldenimage.packer import inputs
from goldenimage.packer.render import Settings, render_target
from support import recipes, snapshots
from support.recipes import CTX

TARGETS = [(image, target) for image in recipes.example_images() for target in image.spec.targets]


def _render(spec: GoldenImageSpec, target_name: str, **kwargs: object) -> str:
    target = next(t for t in spec.targets if t.name == target_name)
    return render_target(spec, target, CTX, source=kwargs.pop("source", None), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("image", "target"), TARGETS, ids=lambda x: getattr(x, "name", None) or x.metadata.name)
def test_snapshot(image, target) -> None:  # type: ignore[no-untyped-def]
    source = "ami-0a1b2c3d4e5f60718" if target.aws else None
    text = render_target(image.spec, target, CTX, source=source)
    snapshots.check(f"{image.metadata.name}-{target.name}.pkr.hcl", text)


@pytest.mark.parametrize(("image", "target"), TARGETS, ids=lambda x: getattr(x, "name", None) or x.metadata.name)
def test_every_resource_carries_the_build_tags_and_names_carry_the_build_id(image, target) -> None:  # type: ignore[no-untyped-def]
    text = render_target(image.spec, target, CTX, source=None)
    tag_key = {
        "aws": '"goldenimage.io/build-id"',
        "azure": '"goldenimage.io_build-id"',
        "gcp": '"goldenimage-io_build-id"',
    }
    assert re.search(rf"{re.escape(tag_key[target.cloud])}\s*=\s*\"web-base-7-1a2b3c4d\"", text)
    attributes = {
        "aws": ["tags", "snapshot_tags", "run_tags", "run_volume_tags"],
        "gcp": ["image_labels", "labels"],
        "azure": ["azure_tags"],
    }[target.cloud]
    for attribute in attributes:
        assert re.search(rf"\n  {attribute}\s+= local.resource_tags\n", text), attribute
    name_attribute = {"aws": "ami_name", "gcp": "image_name", "azure": "managed_image_name"}[target.cloud]
    artifact = f"web-base-7-1a2b3c4d-{target.name}-a"
    assert re.search(rf'{name_attribute}\s+= "{artifact}\$\{{var.attempt\}}"', text)
    assert 'post-processor "manifest"' in text


def test_provisioners_run_in_order_and_generalize_comes_last() -> None:
    spec = recipes.example("web-multicloud").spec
    text = _render(spec, "aws-eu")
    order = [m.group(1) for m in re.finditer(r'provisioner "(\w+)"', text)]
    # shell, ansible, file (upload then install), generalize
    assert order == ["shell", "ansible", "file", "shell", "shell"]
    assert text.rindex("truncate -s 0 /etc/machine-id") > text.rindex("sudo install -D -m 0644")
    assert "/etc/ssh/ssh_host_*" in text and "authorized_keys" in text and "_history" in text


def test_user_text_is_never_interpolated() -> None:
    spec = recipes.spec(
        """
        targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiId: ami-0123456789abcdef0}}}]
        provisioners:
          - shell: {inline: ['echo ${HOME} %{ if true }x%{ endif } {{ .Vars }}'], env: {GREETING: "${var.attempt}"}}
        tags: {Note: "${aws:region}", for: x}
        """
    )
    text = _render(spec, "aws-eu")
    # HCL interpolation is escaped; a bare `for` key is quoted, not read as an expression.
    assert '"GREETING=$${var.attempt}"' in text
    assert '"$${aws:region}"' in text and '"for"' in text
    # Inline commands run from a file, where Packer's own `{{ }}` templating never looks.
    assert re.search(r'script\s+= "\$\{var.inputs_dir\}/p0-inline.sh"', text)
    (script,) = [f.content.inline for f in inputs.files(spec) if f.name == "p0-inline.sh"]
    assert script == "#!/bin/sh -e\necho ${HOME} %{ if true }x%{ endif } {{ .Vars }}\n"


def test_packer_template_syntax_is_refused_where_packer_would_read_it() -> None:
    base = "targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiId: ami-0123456789abcdef0}}}]\n"
    for extra in (
        "tags: {Role: '{{ .SourceAMIName }}'}",
        "provisioners: [{shell: {inline: [date], env: {A: '{{user `x`}}'}}}]",
        'provisioners: [{ansible: {playbook: {inline: x}, extraVars: {a: \'{{ lookup("env", "HOME") }}\'}}}]',
        "provisioners: [{file: {source: {inline: x}, destination: '/etc/{{ .Name }}'}}]",
    ):
        with pytest.raises(ValidationError, match=re.escape("may not contain '{{'")):
            recipes.spec(base + extra)


def test_without_a_communicator_provisioners_are_rendered_but_skipped() -> None:
    spec = recipes.example("web-base").spec
    text = _render(spec, "aws-eu", settings=Settings(communicator="none"))
    assert 'communicator            = "none"' in text
    provisioners = text.count('provisioner "')
    assert provisioners == 4
    assert len(re.findall(r'except\s+= \["amazon-ebs.aws-eu"\]', text)) == provisioners
    assert "ssh_username" not in text


def test_secret_variables_are_sensitive_and_guarded_by_a_scan() -> None:
    spec = recipes.spec(
        """
        targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiId: ami-0123456789abcdef0}}}]
        secretVariables: [{name: rhsm_token, secretKeyRef: {name: rhsm, key: token}}]
        provisioners: [{shell: {inline: [subscription-manager register], secretEnv: {RHSM_TOKEN: rhsm_token}}}]
        """
    )
    text = _render(spec, "aws-eu")
    assert re.search(r'variable "rhsm_token" \{\n  type\s+= string\n  sensitive = true\n\}', text)
    assert '"RHSM_TOKEN=${var.rhsm_token}"' in text
    assert "GOLDENIMAGE_SECRET_0=${var.rhsm_token}" in text
    assert "refusing to capture an image that contains a secret" in text


def test_resolved_source_wins_over_the_filter() -> None:
    spec = recipes.example("web-base").spec
    assert 'source_ami              = "ami-0a1b2c3d4e5f60718"' in _render(
        spec, "aws-eu", source="ami-0a1b2c3d4e5f60718"
    )
    unresolved = _render(spec, "aws-eu")
    assert "source_ami_filter" in unresolved and "most_recent = true" in unresolved


def test_sharing_and_encryption() -> None:
    spec = recipes.spec(
        """
        targets:
          - name: aws-eu
            aws:
              region: eu-west-1
              source: {amiId: ami-0123456789abcdef0}
              shareWith:
                accounts: ["111122223333"]
                organizationArns:
                  - arn:aws:organizations::111122223333:organization/o-abc123
                  - arn:aws:organizations::111122223333:ou/o-abc123/ou-ab12-cdef3456
              encryption: {encrypted: true, kmsKeyId: alias/images}
        """
    )
    text = _render(spec, "aws-eu")
    assert 'ami_users               = ["111122223333"]' in text
    # Organizations are shared by the runner after the build: Packer 1.6.6 knows no ami_org_arns.
    assert "ami_org_arns" not in text and "ami_ou_arns" not in text
    assert "encrypt_boot            = true" in text and '"alias/images"' in text


def test_hcl_strings_escape_quotes_backslashes_and_newlines() -> None:
    assert hcl.string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert (
        hcl.value({"goldenimage.io/x": 1, "plain": True})
        == '{\n  "goldenimage.io/x" = 1\n  "plain"            = true\n}'
    )
    # Only escapes HCL knows: control characters as \\uNNNN, never JSON's \\b or \\f.
    assert hcl.string("a\bb\fc C:\\bin") == '"a\\u0008b\\u000cc C:\\\\bin"'


def test_temporary_names_are_per_target_and_fit_the_clouds_limits() -> None:
    long_ctx = BuildIdentity(
        namespace="n",
        image="i" * 40,
        build="i" * 40 + "-1234567",
        version=1234567,
        uid="1a2b3c4d",
        build_id="i" * 40 + "-1234567-1a2b3c4d",
    )
    spec = recipes.spec(
        """
        targets:
          - name: gcp-a-very-long-target-name-here
            gcp: {project: platform-images, zone: europe-west1-b, source: {family: rhel-9}}
          - name: gcp-b
            gcp: {project: platform-images, zone: europe-west1-b, source: {family: rhel-9}}
        """
    )
    names = set()
    for target in spec.targets:
        text = render_target(spec, target, long_ctx, source=None)
        (name,) = re.findall(r'instance_name\s+= "([^"]+)-a\$\{var.attempt\}"', text)
        assert len(name) + len("-a10") <= 63
        names.add(name)
    assert len(names) == 2


@pytest.mark.parametrize(("image", "target"), TARGETS, ids=lambda x: getattr(x, "name", None) or x.metadata.name)
def test_the_variables_a_template_declares_are_supplied_or_secret(image, target) -> None:  # type: ignore[no-untyped-def]
    text = render_target(image.spec, target, CTX, source=None)
    declared = set(re.findall(r'^variable "([a-z_0-9]+)"', text, re.M))
    secrets = {v.name for v in image.spec.secret_variables}
    assert declared - secrets <= set(SUPPLIED_VARIABLES)
    assert "attempt" in declared and not secrets & set(SUPPLIED_VARIABLES)


@pytest.mark.parametrize(
    ("first", "second"),
    [("eu", "eu-2"), ("a" * 32, "a" * 31 + "b"), ("web", "web-a1")],
)
def test_two_targets_in_one_region_never_name_their_images_alike(first: str, second: str) -> None:
    aws = {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}
    spec = GoldenImageSpec.model_validate({"targets": [{"name": first, "aws": aws}, {"name": second, "aws": aws}]})
    named = [re.search(r'ami_name\s+= "([^"]+)"', _render(spec, t)) for t in (first, second)]
    assert named[0] and named[1]
    assert named[0].group(1) != named[1].group(1)
    # GCE's limit of 63 characters holds even a long name with a two-digit attempt.
    assert all(len(m.group(1).replace("${var.attempt}", "10")) <= 63 for m in named if m)
