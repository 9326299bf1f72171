"""GoldenImage: the recipe of an image — sources, provisioners, targets, validation, rebuild and
retention policy."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from . import durations
from .base import (
    FieldRule,
    Format,
    Model,
    ObjectName,
    Rule,
    at_most_one_of,
    exactly_one_of,
    no_template_text,
    unique_by,
)
from .conditions import ConditionList
from .types import (
    AbsolutePath,
    AmiId,
    AwsAccountId,
    AwsRegion,
    AzureLocation,
    AzureName,
    CloudName,
    ConfigMapKeyRef,
    Content,
    CronSchedule,
    Duration,
    GcpLocation,
    GcpName,
    GcpProject,
    GcpZone,
    PackerText,
    PackerWord,
    PlainText,
    PositiveDuration,
    SecretKeyRef,
    SecretRef,
    StringMap,
    Tags,
    TargetName,
    Uuid,
    Version,
)

# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------

AwsInstanceType = Annotated[
    str,
    Format(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", "must be an EC2 instance type such as t3.medium", max_length=32),
]
OrganizationArn = Annotated[
    str,
    Format(
        r"^arn:aws[a-z-]*:organizations::[0-9]{12}:(organization|ou)/[-a-z0-9/]+$",
        "must be an AWS Organizations ARN (organization or OU)",
        max_length=256,
    ),
]


class AmiFilter(Model):
    """Selects the source AMI by name pattern and owners, like Packer's source_ami_filter. The
    operator looks it up in the build region, skipping deprecated and revoked AMIs; a different
    match is a new version unless rebuild.onSourceChange is false."""

    name: PackerText = Field(description="AMI name pattern; '*' matches any characters.")
    owners: Annotated[list[PackerText], Field(min_length=1, max_length=10)] = Field(
        description="Account IDs or aliases (amazon, aws-marketplace, self) that may own the AMI."
    )
    most_recent: bool = Field(
        True, description="Pick the newest match when several AMIs match; when false, several matches are an error."
    )
    filters: Tags = Field(
        default_factory=dict, description="Further DescribeImages filters, e.g. architecture: x86_64."
    )


class AwsSource(Model):
    """The AMI the build starts from: exactly one of amiId or amiFilter."""

    rules = (exactly_one_of("ami_id", "ami_filter", message="set exactly one of amiId or amiFilter"),)

    ami_id: AmiId | None = Field(None, description="A fixed AMI in the build region, used as written.")
    ami_filter: AmiFilter | None = None


class AwsSharing(Model):
    """Who may launch the image besides the owning account."""

    accounts: Annotated[list[AwsAccountId], Field(max_length=50)] = Field(
        default_factory=list, description="AWS account IDs (12 digits) that may launch the AMI."
    )
    organization_arns: Annotated[list[OrganizationArn], Field(max_length=20)] = Field(
        default_factory=list,
        description="ARNs of AWS Organizations or organizational units whose accounts may launch the AMI; "
        "applied after the build in every region the AMI is in.",
    )


class AwsEncryption(Model):
    """Encryption of the AMI's EBS snapshots."""

    encrypted: bool = Field(True, description="Encrypt the image's snapshots.")
    kms_key_id: Annotated[str, Field(min_length=1, max_length=2048), no_template_text] | None = Field(
        None, description="KMS key ID, ARN or alias; the account's default EBS key when unset."
    )


class AwsTarget(Model):
    """An AMI built with Packer's amazon-ebs builder."""

    rules = (
        Rule(
            "!has(self.copyToRegions) || !self.copyToRegions.exists(r, r == self.region)",
            "copyToRegions must not repeat the build region",
            lambda m: m.region not in m.copy_to_regions,
            field_path=".copyToRegions",
        ),
    )

    region: AwsRegion = Field(description="Region the build runs in and the AMI is registered in.")
    copy_to_regions: Annotated[
        list[AwsRegion], Field(max_length=20, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = Field(default_factory=list, description="Regions the finished AMI is copied to.")
    instance_type: AwsInstanceType = Field(
        "t3.medium",
        description="EC2 instance type of the build instance, and of validation instances unless "
        "validation.aws.instanceType is set.",
    )
    ssh_username: PackerWord = Field(
        "ec2-user",
        description="User Packer logs in as over SSH; it depends on the source AMI (e.g. ubuntu on Ubuntu).",
    )
    source: AwsSource
    subnet_id: PackerWord | None = Field(
        None,
        description="Subnet ID of the build instance; a default subnet of the default VPC when unset. Packer "
        "connects to the instance's private address, so the build Job must be able to reach the subnet.",
    )
    security_group_ids: Annotated[list[PackerWord], Field(max_length=5)] = Field(
        default_factory=list,
        description="Security group IDs of the build instance; Packer creates a temporary one that allows SSH "
        "when empty.",
    )
    iam_instance_profile: PackerText | None = Field(
        None, description="IAM instance profile of the build instance, for provisioners that call AWS."
    )
    share_with: AwsSharing | None = Field(None, description="Who may launch the AMI besides the owning account.")
    encryption: AwsEncryption | None = Field(
        None,
        description="Encryption of the AMI's snapshots; when unset, Packer leaves it to the source AMI and the "
        "account's EBS defaults.",
    )


class GcpSource(Model):
    """The image the build starts from: exactly one of image or family."""

    rules = (exactly_one_of("image", "family", message="set exactly one of image or family"),)

    image: GcpName | None = Field(None, description="Name of a fixed image, used as written.")
    family: GcpName | None = Field(
        None,
        description="Image family: the operator resolves it to the family's newest image that is ready, not "
        "deprecated and not revoked; a different image is a new version unless rebuild.onSourceChange is false.",
    )
    project: GcpProject | None = Field(
        None, description="Project holding the source image; the target's project when unset."
    )


class GcpTarget(Model):
    """A Compute Engine image built with Packer's googlecompute builder."""

    project: GcpProject = Field(
        description="Project the build and validation instances run in and the image is created in."
    )
    zone: GcpZone = Field(description="Zone the build and validation instances run in.")
    source: GcpSource
    machine_type: PackerWord = Field("e2-medium", description="Machine type of the build and validation instances.")
    network: PackerText | None = Field(
        None,
        description="VPC network of the build and validation instances, by name or path; the project's default "
        "network when unset. Packer connects to the instance's internal address, so the build Job must be able to "
        "reach the network.",
    )
    subnetwork: PackerText | None = Field(
        None,
        description="Subnetwork of the build and validation instances, by name (in the zone's region) or path.",
    )
    storage_locations: Annotated[list[GcpLocation], Field(max_length=1)] = Field(
        default_factory=list,
        description="Where the image is stored (one region or multi-region; the zone's region when unset). "
        "The built image joins no family: families are written by channel publication.",
    )
    ssh_username: PackerWord = Field(
        "packer", description="User Packer logs in as over SSH; command checks log in as it too."
    )
    disk_size_gb: Annotated[int, Field(ge=10, le=65536)] | None = Field(
        None,
        description="Boot disk size in GB of the build and validation instances; when unset, builds use Packer's "
        "default and validation instances the image's own size.",
    )


class AzureMarketplaceSource(Model):
    """An Azure Marketplace image, named as publisher:offer:sku:version."""

    publisher: AzureName = Field(description="Publisher of the image, e.g. RedHat.")
    offer: AzureName = Field(description="Offer of the image, e.g. RHEL.")
    sku: AzureName = Field(description="SKU of the image, e.g. 9-lvm-gen2.")
    version: PackerWord = Field(
        "latest",
        description="Image version, or latest: the operator resolves latest to the newest version in the "
        "target's location, and a newer one is a new version unless rebuild.onSourceChange is false.",
    )


GalleryImageVersionId = Annotated[
    str,
    Format(
        r"(?i)^/subscriptions/[-\w.()]+/resourceGroups/[-\w.()]+/providers/Microsoft\.Compute/galleries/[-\w.()]+"
        r"/images/[-\w.()]+/versions/[-\w.()]+$",
        "must be a gallery image version id: /subscriptions/.../resourceGroups/.../providers/"
        "Microsoft.Compute/galleries/.../images/.../versions/...",
        max_length=1024,
    ),
]


class AzureSource(Model):
    """The image the build starts from: exactly one of marketplace or galleryImageVersionId."""

    rules = (
        exactly_one_of(
            "marketplace",
            "gallery_image_version_id",
            message="set exactly one of marketplace or galleryImageVersionId",
        ),
    )

    marketplace: AzureMarketplaceSource | None = None
    gallery_image_version_id: GalleryImageVersionId | None = Field(
        None,
        description="Resource ID of a Compute Gallery image version, used as written; it must be replicated to "
        "the target's location.",
    )


class AzureGallery(Model):
    """The Azure Compute Gallery image definition that receives a new version per build."""

    name: AzureName = Field(description="Name of the Compute Gallery.")
    image_definition: AzureName = Field(
        description="Image definition in the gallery, which must exist; each build adds the version "
        "<version>.0.<attempt> to it."
    )
    resource_group: AzureName | None = Field(
        None, description="Resource group of the gallery; the target's resourceGroup when unset."
    )
    replication_regions: Annotated[
        list[AzureLocation], Field(max_length=20, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = Field(
        default_factory=list,
        description="Further locations the image version is replicated to; it always is in the target's location.",
    )


class AzureTarget(Model):
    """A Compute Gallery image version built with Packer's azure-arm builder (Linux only)."""

    subscription_id: Uuid = Field(description="Subscription the build runs in and the gallery belongs to.")
    resource_group: AzureName = Field(
        description="Resource group of the managed image the build makes on its way to the gallery (deleted "
        "after it), and of the gallery unless gallery.resourceGroup is set."
    )
    location: AzureLocation = Field(
        description="Location the build VM runs in; the image version is always replicated there."
    )
    vm_size: PackerWord = Field("Standard_D2s_v5", description="VM size of the build and validation VMs.")
    os_type: Literal["Linux"] = Field(
        "Linux", description="Operating system of the image: Linux only, as provisioning and generalization are."
    )
    ssh_username: PackerWord = Field(
        "packer", description="User Packer logs in as over SSH; command checks log in as it too."
    )
    source: AzureSource
    gallery: AzureGallery


class Target(Model):
    """One place the image is built; each target builds in its own Job, in parallel."""

    rules = (exactly_one_of("aws", "gcp", "azure", message="a target needs exactly one cloud: aws, gcp or azure"),)

    name: TargetName = Field(
        description="Name of the target, unique in the image; it names the target's Jobs and its Packer source."
    )
    aws: AwsTarget | None = None
    gcp: GcpTarget | None = None
    azure: AzureTarget | None = None

    @property
    def cloud(self) -> CloudName:
        if self.aws is not None:
            return "aws"
        if self.gcp is not None:
            return "gcp"
        return "azure"


# ---------------------------------------------------------------------------------------------
# Provisioners
# ---------------------------------------------------------------------------------------------

PackerVariableName = Annotated[
    str,
    Format(
        r"^[a-z_][a-z0-9_]*$",
        "must be a Packer variable name: lowercase letters, digits and '_'",
        max_length=64,
    ),
]

EnvName = Annotated[
    str,
    Format(
        r"^[A-Za-z_][A-Za-z0-9_]*$",
        "must be an environment variable name: letters, digits and '_'",
        max_length=128,
    ),
]


class ShellProvisioner(Model):
    """Runs shell commands on the build instance as the SSH user (sudo for root): exactly one of
    inline or script."""

    rules = (exactly_one_of("inline", "script", message="set exactly one of inline or script"),)

    inline: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1, max_length=200)]
        | None
    ) = Field(
        None, description="Commands run in order by /bin/sh -e, one a line: the first that fails fails the build."
    )
    script: Content | None = Field(None, description="A script, uploaded to the instance and run there.")
    env: Annotated[dict[EnvName, PlainText], Field(max_length=64)] = Field(
        default_factory=dict, description="Environment variables for the commands (not for secrets)."
    )
    secret_env: Annotated[dict[EnvName, PackerVariableName], Field(max_length=20)] = Field(
        default_factory=dict,
        description="Environment variables set from spec.secretVariables (variable name by env name); "
        "Packer masks their values in its output.",
    )


class AnsibleProvisioner(Model):
    """Runs an Ansible playbook against the build instance, from the build Job over Packer's SSH
    connection."""

    playbook: Content = Field(description="The playbook.")
    extra_vars: StringMap = Field(
        default_factory=dict,
        description="Variables passed as --extra-vars, by name; values are strings (not for secrets).",
    )
    galaxy_requirements: Content | None = Field(None, description="A requirements.yml for ansible-galaxy.")


FileMode = Annotated[str, Format(r"^0?[0-7]{3}$", "must be an octal file mode such as 0644", max_length=4)]


class FileProvisioner(Model):
    """Uploads a file and installs it (as root) at `destination`."""

    source: Content = Field(description="Content of the file.")
    destination: AbsolutePath = Field(
        description="Absolute path of the file in the image; missing parent directories are created."
    )
    mode: FileMode = Field("0644", description="Octal file mode of the installed file.")


class Provisioner(Model):
    """One step, run in order on every target."""

    rules = (
        exactly_one_of("shell", "ansible", "file", message="a provisioner needs exactly one of shell, ansible or file"),
    )

    shell: ShellProvisioner | None = None
    ansible: AnsibleProvisioner | None = None
    file: FileProvisioner | None = None


# ---------------------------------------------------------------------------------------------
# Template escape hatch, credentials, secrets
# ---------------------------------------------------------------------------------------------


# The Packer variables the operator supplies (to its own templates, and to a user template
# that declares them); neither spec.template.variables nor secretVariables may shadow them.
SUPPLIED_VARIABLES = (
    "build_id",
    "attempt",
    "target",
    "cloud",
    "region",
    "inputs_dir",
    "manifest_path",
    "aws_endpoint",
    "azure_client_id",
    "azure_client_secret",
    "azure_tenant_id",
    "gcp_credentials",
)
_SUPPLIED_CEL = "[" + ", ".join(f"'{v}'" for v in SUPPLIED_VARIABLES) + "]"
_SUPPLIED_MESSAGE = f"may not be {', '.join(SUPPLIED_VARIABLES)}: the operator supplies them"
not_supplied = FieldRule(
    f"self.all(k, !(k in {_SUPPLIED_CEL}))", _SUPPLIED_MESSAGE, lambda value: not set(value) & set(SUPPLIED_VARIABLES)
)
not_a_supplied_name = FieldRule(
    f"!(self in {_SUPPLIED_CEL})", _SUPPLIED_MESSAGE, lambda value: value not in SUPPLIED_VARIABLES
)


class UserTemplate(Model):
    """The user's own Packer HCL2; the operator renders nothing but supplies its variables."""

    config_map_ref: ConfigMapKeyRef = Field(description="ConfigMap key holding the HCL2 template.")
    variables: Annotated[
        dict[PackerVariableName, Annotated[str, Field(max_length=4096)]], Field(max_length=100), not_supplied
    ] = Field(
        default_factory=dict,
        description="Values of variables the template declares, by name (not for secrets); the names of the "
        "variables the operator supplies are refused.",
    )


class SecretVariable(Model):
    """A sensitive Packer variable whose value comes from a Secret; never written to status or logs."""

    name: Annotated[PackerVariableName, not_a_supplied_name] = Field(
        description="Name of the sensitive Packer variable that receives the value; shell secretEnv refers to it."
    )
    secret_key_ref: SecretKeyRef = Field(
        description="Secret key holding the value; the build waits while it does not exist."
    )


class CloudCredentials(Model):
    """The identity used on one cloud: a ServiceAccount, a Secret, or neither for the operator's own
    identity (then the Jobs run as the namespace's default ServiceAccount)."""

    rules = (
        at_most_one_of(
            "service_account_name", "secret_ref", message="set at most one of serviceAccountName or secretRef"
        ),
    )

    service_account_name: ObjectName | None = Field(
        None,
        description="Kubernetes ServiceAccount bound to a cloud identity (IRSA, Workload Identity) that the build "
        "and validation Jobs run as; the operator's own calls use its own identity.",
    )
    secret_ref: SecretRef | None = Field(
        None,
        description="Secret with the cloud's standard environment variables (e.g. AWS_ACCESS_KEY_ID): given to "
        "the Jobs as environment, and used by the operator's own calls for this image.",
    )


class Credentials(Model):
    aws: CloudCredentials | None = Field(None, description="Identity for AWS targets.")
    gcp: CloudCredentials | None = Field(None, description="Identity for GCP targets.")
    azure: CloudCredentials | None = Field(None, description="Identity for Azure targets.")

    def of(self, cloud: CloudName) -> CloudCredentials | None:
        found: CloudCredentials | None = getattr(self, cloud)
        return found


# ---------------------------------------------------------------------------------------------
# Validation, build, rebuild, retention
# ---------------------------------------------------------------------------------------------

Port = Annotated[int, Field(ge=1, le=65535)]
CheckName = Annotated[
    str,
    Format(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "must be a lowercase name: letters, digits and '-'", max_length=63),
]


class TcpCheck(Model):
    """Passes when the port accepts a TCP connection."""

    port: Port = Field(description="TCP port on the instance.")


class HttpCheck(Model):
    """Passes when a GET request gets the expected status (and body text)."""

    port: Port = Field(80, description="TCP port of the HTTP server on the instance.")
    path: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")] = Field(
        "/", description="Path requested, starting with '/'."
    )
    scheme: Literal["http", "https"] = Field(
        "http", description="Scheme of the request; with https the certificate is not verified."
    )
    expect_status: Annotated[int, Field(ge=100, le=599)] = Field(
        200, description="HTTP status code the response must have."
    )
    contains: Annotated[str, Field(max_length=1024)] | None = Field(
        None, description="Text the body (its first 64 KiB) must contain."
    )


class CommandCheck(Model):
    """Passes when a shell command on the instance exits with the expected code: run through SSM Run
    Command on AWS (which needs validation.aws.iamInstanceProfile), over SSH on GCP and Azure."""

    run: Annotated[str, Field(min_length=1, max_length=4096)] = Field(description="The shell command.")
    expect_exit_code: Annotated[int, Field(ge=0, le=255)] = Field(0, description="Exit code the command must return.")


class Check(Model):
    """One check of an instance booted from an artifact: exactly one of tcp, http or command."""

    rules = (exactly_one_of("tcp", "http", "command", message="a check needs exactly one of tcp, http or command"),)

    name: CheckName | None = Field(
        None,
        description="Name of the check in the ImageBuild's status, unique among the checks; defaults to the kind and "
        "port, e.g. tcp-22 (command for a command check).",
    )
    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    command: CommandCheck | None = None
    timeout: PositiveDuration = Field(
        "2m", description="How long the check is retried until it passes, within validation.timeout."
    )

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.tcp is not None:
            return f"tcp-{self.tcp.port}"
        if self.http is not None:
            return f"http-{self.http.port}"
        return "command"


class Selector(Model):
    """Selects cloud resources by their tags (all must match)."""

    tags: Annotated[dict[str, Annotated[str, Field(max_length=256)]], Field(min_length=1, max_length=10)] = Field(
        description="Tag keys and the values they must have."
    )


class AwsValidation(Model):
    """Where validation instances run on AWS; the Job that checks them must be able to reach them."""

    instance_type: AwsInstanceType | None = Field(
        None, description="Instance type of the validation instances; the target's instanceType when unset."
    )
    subnet_selector: Selector | None = Field(
        None, description="Subnet to launch in, by tags, in every region; the default VPC when unset."
    )
    security_group_selector: Selector | None = Field(
        None, description="Security groups to attach, by tags, in every region; the VPC's default group when unset."
    )
    iam_instance_profile: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="Instance profile allowing SSM, which command checks need."
    )
    address: Literal["private", "public"] = Field("private", description="Which address the checks connect to.")


class Validation(Model):
    """How each artifact is validated: an instance booted from it must run, pass the cloud's status
    checks and then the checks here."""

    timeout: PositiveDuration = Field("20m", description="How long one artifact's validation may take in all.")
    checks: Annotated[list[Check], Field(max_length=32), unique_by("name", message="check names must be unique")] = (
        Field(
            default_factory=list,
            description="Checks run in order against the instance; with none, booting and passing the cloud's "
            "status checks is enough.",
        )
    )
    aws: AwsValidation | None = None


class BuildPolicy(Model):
    """Limits of the build Jobs."""

    timeout: PositiveDuration = Field(
        "2h", description="Deadline of each build Job, that is of one attempt of one target (activeDeadlineSeconds)."
    )
    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        3, description="Attempts per target before it fails; a permanent error fails it at once."
    )


_WHOLE_DAYS = r"(^|[smh])0*[1-9][0-9]*d"


class RebuildPolicy(Model):
    """When a new version is built although the recipe did not change: on a schedule and at a
    maximum age (neither while the latest version is still at work), and when a source changes."""

    rules = (
        # CEL's duration() knows no days: a day count of at least one is enough, and a value
        # without days is compared as a duration. Python checks exactly the same.
        Rule(
            f"!has(self.maxAge) || self.maxAge.matches(r'{_WHOLE_DAYS}') || "
            "(!self.maxAge.contains('d') && duration(self.maxAge) >= duration('1h'))",
            "rebuild.maxAge must be at least 1h (and a day count, if any, at least 1d)",
            lambda m: (
                m.max_age is None
                or re.search(_WHOLE_DAYS, m.max_age) is not None
                or ("d" not in m.max_age and durations.parse(m.max_age) >= timedelta(hours=1))
            ),
            field_path=".maxAge",
        ),
    )

    schedule: CronSchedule | None = Field(
        None, description="Cron schedule (five fields, UTC) of routine rebuilds, e.g. '0 3 * * 1'."
    )
    max_age: Duration | None = Field(
        None, description="Rebuild when the latest version is older than this, e.g. 30d; at least 1h."
    )
    on_source_change: bool = Field(
        True,
        description="Rebuild when a source the operator looks up (amiFilter, family, Marketplace latest) resolves "
        "to another image; when false, the latest version's sources are kept while the recipe is unchanged.",
    )


class RetentionPolicy(Model):
    """Which versions are kept, and what happens to the artifacts of those deleted."""

    keep_versions: Annotated[int, Field(ge=1, le=1000)] = Field(
        10,
        description="How many of the newest versions are kept; older ImageBuilds are deleted, except those a "
        "channel refers to, the newest validated one and those still at work.",
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain",
        description="Whether cloud artifacts are deleted with their ImageBuild: Retain keeps them, Delete deletes "
        "them unless a channel still refers to the version.",
    )


# One artifact per target and region: every status list of them (validation, channel entries)
# holds this many.
MAX_ARTIFACTS = 128


def _artifact_count(target: Target) -> int:
    """An upper bound of the target's artifacts, as the CEL rule counts them."""
    if target.aws is not None:
        return 1 + len(target.aws.copy_to_regions)
    if target.azure is not None:
        return 1 + len(target.azure.gallery.replication_regions)
    return 1


MAX_REVOCATIONS = 100
# Who revoked a build declared revoked on its image (ImageBuild spec.revoked.revokedBy).
DECLARED_BY_PREFIX = "goldenimage/"

not_blank = FieldRule(r"self.matches(r'\S')", "must not be blank", lambda value: re.search(r"\S", value) is not None)


def declared_by(image: str) -> str:
    """The revokedBy of a revocation carried out because the image declares it."""
    return DECLARED_BY_PREFIX + image


class DeclaredRevocation(Model):
    """A version of this image withdrawn from every channel, declared with the image (in Git)."""

    version: Version = Field(description="The version to revoke (its ImageBuild is <image>-<version>).")
    reason: Annotated[str, Field(min_length=1, max_length=256), not_blank] = Field(
        description="Why, e.g. a CVE: recorded on the ImageBuild and tagged on its artifacts in the clouds."
    )


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


class GoldenImageSpec(Model):
    """The recipe of the image: where it is built, how it is provisioned and validated, and when it
    is rebuilt and retired."""

    rules = (
        Rule(
            "!has(self.template) || !has(self.provisioners) || size(self.provisioners) == 0",
            "a user template replaces provisioners: set template or provisioners, not both",
            lambda m: m.template is None or not m.provisioners,
            field_path=".template",
        ),
        Rule(
            "!has(self.provisioners) || self.provisioners.all(p, !has(p.shell) || !has(p.shell.secretEnv) || "
            "p.shell.secretEnv.all(k, has(self.secretVariables) && "
            "self.secretVariables.exists(v, v.name == p.shell.secretEnv[k])))",
            "shell secretEnv may only name variables declared in secretVariables",
            lambda m: all(
                name in {v.name for v in m.secret_variables}
                for p in m.provisioners
                if p.shell is not None
                for name in p.shell.secret_env.values()
            ),
            field_path=".provisioners",
        ),
        Rule(
            "!has(self.tags) || !self.targets.exists(t, has(t.aws)) || "
            "self.tags.all(k, !k.lowerAscii().startsWith('aws:'))",
            "tag keys may not begin with aws: on an image with AWS targets: AWS reserves that prefix",
            lambda m: (
                not any(t.aws is not None for t in m.targets) or not any(k.lower().startswith("aws:") for k in m.tags)
            ),
            field_path=".tags",
        ),
        Rule(
            "self.targets.map(t, has(t.aws) ? 1 + (has(t.aws.copyToRegions) ? size(t.aws.copyToRegions) : 0) : "
            "has(t.azure) ? 1 + (has(t.azure.gallery.replicationRegions) ? "
            f"size(t.azure.gallery.replicationRegions) : 0) : 1).sum() <= {MAX_ARTIFACTS}",
            f"a version holds at most {MAX_ARTIFACTS} artifacts: one per target and region it is copied or "
            "replicated to, over all targets",
            lambda m: sum(_artifact_count(t) for t in m.targets) <= MAX_ARTIFACTS,
            field_path=".targets",
        ),
    )

    targets: Annotated[
        list[Target],
        Field(
            min_length=1,
            max_length=16,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            description="Where the image is built: one cloud each, each target in its own Jobs, all in parallel.",
        ),
        unique_by("name", message="target names must be unique"),
    ]
    provisioners: Annotated[list[Provisioner], Field(max_length=64)] = Field(
        default_factory=list,
        description="Steps run in order on every target's build instance, before generalization (not with template).",
    )
    generalize: bool = Field(
        True,
        description="Finish with cloud-init clean, an empty machine-id and no SSH host keys, "
        "authorized_keys or shell history.",
    )
    template: UserTemplate | None = Field(
        None,
        description="Your own Packer HCL2 template instead of provisioners: it runs alone, without the operator's "
        "generalization and secret scan, and gets the variables the operator supplies (build_id, attempt, target, "
        "cloud, region, inputs_dir, manifest_path and more) if it declares them.",
    )
    tags: Tags = Field(
        default_factory=dict,
        description="Tags (labels on GCP) on every artifact and every resource the build creates; keys beginning "
        "with goldenimage.io/ are the operator's.",
    )
    credentials: Credentials | None = Field(
        None,
        description="Cloud identities, per cloud, of the build and validation Jobs and of the operator's own calls "
        "for this image; the operator's own identity for a cloud not listed.",
    )
    secret_variables: Annotated[
        list[SecretVariable],
        Field(max_length=20),
        unique_by("name", message="secret variable names must be unique"),
    ] = Field(
        default_factory=list,
        description="Sensitive Packer variables set from Secrets: Packer gets them as environment, and they are "
        "never written to the template, the status or logs.",
    )
    build: BuildPolicy | None = None
    validation: Validation | None = None
    rebuild: RebuildPolicy | None = None
    retention: RetentionPolicy | None = None
    revocations: Annotated[
        list[DeclaredRevocation],
        Field(
            max_length=MAX_REVOCATIONS,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["version"]},
        ),
        unique_by("version", message="revoked versions must be unique"),
    ] = Field(
        default_factory=list,
        description="Versions to revoke, as `kubectl golden revoke` does: each one's ImageBuild is revoked as soon as "
        "it exists, and every channel moves off it. Not part of the fingerprint: no new version is built. Removing "
        "an entry does not restore a version: a revocation cannot be withdrawn.",
    )

    # Optional policies with their defaults, read in one place.
    @property
    def build_policy(self) -> BuildPolicy:
        return self.build or BuildPolicy()

    @property
    def validation_policy(self) -> Validation:
        return self.validation or Validation()

    @property
    def rebuild_policy(self) -> RebuildPolicy:
        return self.rebuild or RebuildPolicy()

    @property
    def retention_policy(self) -> RetentionPolicy:
        return self.retention or RetentionPolicy()

    @property
    def revoked_versions(self) -> dict[int, str]:
        """The declared revocations: reason by version."""
        return {r.version: r.reason for r in self.revocations}

    def credentials_for(self, cloud: CloudName) -> CloudCredentials | None:
        return self.credentials.of(cloud) if self.credentials is not None else None

    def target(self, name: str) -> Target:
        """The target called `name`; LookupError when there is none."""
        found = next((t for t in self.targets if t.name == name), None)
        if found is None:
            raise LookupError(f"no target named {name!r}")
        return found


class GoldenImageStatus(Model):
    """The image's versions as the operator last saw them."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        None, description="The metadata.generation the operator last acted on."
    )
    latest_version: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        None,
        description="Highest version created so far; the next version is numbered after it, even when its "
        "ImageBuild is gone.",
    )
    latest_build: ObjectName | None = Field(None, description="Name of the newest version's ImageBuild.")
    latest_validated_version: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        None, description="Newest version that is validated and not revoked."
    )
    latest_validated_build: ObjectName | None = Field(
        None, description="Name of the newest validated, unrevoked version's ImageBuild."
    )
    fingerprint: Annotated[str, Field(max_length=71)] | None = Field(
        None,
        description="sha256 of what shapes the image now: the recipe's image-shaping fields, the ConfigMap keys "
        "it reads, the resolved sources and the runner image. A change creates a new version.",
    )
    sources: Annotated[dict[str, Annotated[str, Field(max_length=1024)]], Field(max_length=16)] = Field(
        default_factory=dict, description="Source image each target resolved to, by target name."
    )
    last_build_at: datetime | None = Field(None, description="When the newest version was created.")
    next_rebuild_at: datetime | None = Field(
        None,
        description="When rebuild.schedule or rebuild.maxAge next calls for a new version; unset without either.",
    )
    handled_rebuild_token: Annotated[str, Field(max_length=256)] | None = Field(
        None, description="The last goldenimage.io/rebuild annotation value that started a build."
    )
    conditions: ConditionList = Field(
        default_factory=list,
        description="Ready: whether the newest version is built and validated, or what keeps a new version from "
        "being built. Revocations: how the versions spec.revocations lists were revoked, or that a version no "
        "longer listed stays revoked.",
    )
