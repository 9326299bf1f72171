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
    """Selects the source AMI like Packer's source_ami_filter: by name pattern and owners."""

    name: PackerText = Field(description="AMI name pattern; '*' matches any characters.")
    owners: Annotated[list[PackerText], Field(min_length=1, max_length=10)] = Field(
        description="Account IDs or aliases (amazon, aws-marketplace, self) that may own the AMI."
    )
    most_recent: bool = Field(True, description="Pick the newest match when several AMIs match.")
    filters: Tags = Field(
        default_factory=dict, description="Further DescribeImages filters, e.g. architecture: x86_64."
    )


class AwsSource(Model):
    rules = (exactly_one_of("ami_id", "ami_filter", message="set exactly one of amiId or amiFilter"),)

    ami_id: AmiId | None = None
    ami_filter: AmiFilter | None = None


class AwsSharing(Model):
    """Who may launch the image besides the owning account."""

    accounts: Annotated[list[AwsAccountId], Field(max_length=50)] = Field(default_factory=list)
    organization_arns: Annotated[list[OrganizationArn], Field(max_length=20)] = Field(default_factory=list)


class AwsEncryption(Model):
    encrypted: bool = Field(True, description="Encrypt the image's snapshots.")
    kms_key_id: Annotated[str, Field(min_length=1, max_length=2048), no_template_text] | None = Field(
        None, description="KMS key ID, ARN or alias; the account's default EBS key when unset."
    )


class AwsTarget(Model):
    rules = (
        Rule(
            "!has(self.copyToRegions) || !self.copyToRegions.exists(r, r == self.region)",
            "copyToRegions must not repeat the build region",
            lambda m: m.region not in m.copy_to_regions,
        ),
    )

    region: AwsRegion = Field(description="Region the build runs in.")
    copy_to_regions: Annotated[
        list[AwsRegion], Field(max_length=20, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = Field(default_factory=list, description="Regions the finished AMI is copied to.")
    instance_type: AwsInstanceType = "t3.medium"
    ssh_username: PackerWord = "ec2-user"
    source: AwsSource
    subnet_id: PackerWord | None = None
    security_group_ids: Annotated[list[PackerWord], Field(max_length=5)] = Field(default_factory=list)
    iam_instance_profile: PackerText | None = None
    share_with: AwsSharing | None = None
    encryption: AwsEncryption | None = None


class GcpSource(Model):
    rules = (exactly_one_of("image", "family", message="set exactly one of image or family"),)

    image: GcpName | None = None
    family: GcpName | None = None
    project: GcpProject | None = Field(
        None, description="Project holding the source image; the target's project when unset."
    )


class GcpTarget(Model):
    project: GcpProject
    zone: GcpZone
    source: GcpSource
    machine_type: PackerWord = "e2-medium"
    network: PackerText | None = None
    subnetwork: PackerText | None = None
    storage_locations: Annotated[list[GcpLocation], Field(max_length=1)] = Field(
        default_factory=list,
        description="Where the image is stored (one region or multi-region; the zone's region when unset). "
        "The built image joins no family: families are written by channel publication.",
    )
    ssh_username: PackerWord = "packer"
    disk_size_gb: Annotated[int, Field(ge=10, le=65536)] | None = None


class AzureMarketplaceSource(Model):
    publisher: AzureName
    offer: AzureName
    sku: AzureName
    version: PackerWord = "latest"


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
    rules = (
        exactly_one_of(
            "marketplace",
            "gallery_image_version_id",
            message="set exactly one of marketplace or galleryImageVersionId",
        ),
    )

    marketplace: AzureMarketplaceSource | None = None
    gallery_image_version_id: GalleryImageVersionId | None = None


class AzureGallery(Model):
    """The Azure Compute Gallery image definition that receives a new version per build."""

    name: AzureName
    image_definition: AzureName
    resource_group: AzureName | None = Field(None, description="The target's resource group when unset.")
    replication_regions: Annotated[
        list[AzureLocation], Field(max_length=20, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = Field(default_factory=list)


class AzureTarget(Model):
    subscription_id: Uuid
    resource_group: AzureName
    location: AzureLocation
    vm_size: PackerWord = "Standard_D2s_v5"
    os_type: Literal["Linux"] = Field("Linux", description="Linux only: provisioning and generalize are Linux's.")
    ssh_username: PackerWord = "packer"
    source: AzureSource
    gallery: AzureGallery


class Target(Model):
    """One place the image is built; each target builds in its own Job, in parallel."""

    rules = (exactly_one_of("aws", "gcp", "azure", message="a target needs exactly one cloud: aws, gcp or azure"),)

    name: TargetName
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
    rules = (exactly_one_of("inline", "script", message="set exactly one of inline or script"),)

    inline: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1, max_length=200)]
        | None
    ) = None
    script: Content | None = None
    env: Annotated[dict[EnvName, PlainText], Field(max_length=64)] = Field(
        default_factory=dict, description="Environment variables for the commands (not for secrets)."
    )
    secret_env: Annotated[dict[EnvName, PackerVariableName], Field(max_length=20)] = Field(
        default_factory=dict,
        description="Environment variables set from spec.secretVariables (variable name by env name); "
        "Packer masks their values in its output.",
    )


class AnsibleProvisioner(Model):
    playbook: Content
    extra_vars: StringMap = Field(default_factory=dict)
    galaxy_requirements: Content | None = Field(None, description="A requirements.yml for ansible-galaxy.")


FileMode = Annotated[str, Format(r"^0?[0-7]{3}$", "must be an octal file mode such as 0644", max_length=4)]


class FileProvisioner(Model):
    """Uploads a file and installs it (as root) at `destination`."""

    source: Content
    destination: AbsolutePath
    mode: FileMode = "0644"


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

    config_map_ref: ConfigMapKeyRef
    variables: Annotated[
        dict[PackerVariableName, Annotated[str, Field(max_length=4096)]], Field(max_length=100), not_supplied
    ] = Field(default_factory=dict)


class SecretVariable(Model):
    """A sensitive Packer variable whose value comes from a Secret; never written to status or logs."""

    name: Annotated[PackerVariableName, not_a_supplied_name]
    secret_key_ref: SecretKeyRef


class CloudCredentials(Model):
    rules = (
        at_most_one_of(
            "service_account_name", "secret_ref", message="set at most one of serviceAccountName or secretRef"
        ),
    )

    service_account_name: ObjectName | None = Field(
        None, description="Kubernetes ServiceAccount bound to a cloud identity (IRSA, Workload Identity)."
    )
    secret_ref: SecretRef | None = Field(None, description="Secret with the cloud's standard environment variables.")


class Credentials(Model):
    aws: CloudCredentials | None = None
    gcp: CloudCredentials | None = None
    azure: CloudCredentials | None = None

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
    port: Port


class HttpCheck(Model):
    port: Port = 80
    path: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")] = "/"
    scheme: Literal["http", "https"] = "http"
    expect_status: Annotated[int, Field(ge=100, le=599)] = 200
    contains: Annotated[str, Field(max_length=1024)] | None = Field(None, description="Text the body must contain.")


class CommandCheck(Model):
    run: Annotated[str, Field(min_length=1, max_length=4096)]
    expect_exit_code: Annotated[int, Field(ge=0, le=255)] = 0


class Check(Model):
    rules = (exactly_one_of("tcp", "http", "command", message="a check needs exactly one of tcp, http or command"),)

    name: CheckName | None = Field(None, description="Defaults to the kind and port, e.g. tcp-22.")
    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    command: CommandCheck | None = None
    timeout: PositiveDuration = Field("2m", description="How long the check is retried until it passes.")

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

    tags: Annotated[dict[str, Annotated[str, Field(max_length=256)]], Field(min_length=1, max_length=10)]


class AwsValidation(Model):
    """Where validation instances run on AWS; the Job that checks them must be able to reach them."""

    instance_type: AwsInstanceType | None = Field(None, description="The target's instance type when unset.")
    subnet_selector: Selector | None = Field(
        None, description="Subnet to launch in, by tags, in every region; the default VPC when unset."
    )
    security_group_selector: Selector | None = Field(None, description="Security groups to attach, by tags.")
    iam_instance_profile: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="Instance profile allowing SSM, which command checks need."
    )
    address: Literal["private", "public"] = Field("private", description="Which address the checks connect to.")


class Validation(Model):
    timeout: PositiveDuration = Field("20m", description="How long one artifact's validation may take in all.")
    checks: Annotated[list[Check], Field(max_length=32), unique_by("name", message="check names must be unique")] = (
        Field(default_factory=list)
    )
    aws: AwsValidation | None = None


class BuildPolicy(Model):
    timeout: PositiveDuration = Field("2h", description="Deadline of one Packer Job (activeDeadlineSeconds).")
    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(3, description="Attempts per target before it fails.")


_WHOLE_DAYS = r"(^|[smh])0*[1-9][0-9]*d"


class RebuildPolicy(Model):
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
        ),
    )

    schedule: CronSchedule | None = Field(None, description="Cron schedule (UTC) of routine rebakes.")
    max_age: Duration | None = Field(None, description="Rebuild when the latest build is older than this.")
    on_source_change: bool = Field(True, description="Rebuild when a source image filter resolves to a new image.")


class RetentionPolicy(Model):
    keep_versions: Annotated[int, Field(ge=1, le=1000)] = 10
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain", description="Whether cloud artifacts are deleted with their ImageBuild."
    )


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


class GoldenImageSpec(Model):
    rules = (
        Rule(
            "!has(self.template) || !has(self.provisioners) || size(self.provisioners) == 0",
            "a user template replaces provisioners: set template or provisioners, not both",
            lambda m: m.template is None or not m.provisioners,
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
        ),
        Rule(
            "!has(self.tags) || !self.targets.exists(t, has(t.aws)) || "
            "self.tags.all(k, !k.lowerAscii().startsWith('aws:'))",
            "tag keys may not begin with aws: on an image with AWS targets: AWS reserves that prefix",
            lambda m: (
                not any(t.aws is not None for t in m.targets) or not any(k.lower().startswith("aws:") for k in m.tags)
            ),
        ),
    )

    targets: Annotated[
        list[Target],
        Field(
            min_length=1,
            max_length=16,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
        unique_by("name", message="target names must be unique"),
    ]
    provisioners: Annotated[list[Provisioner], Field(max_length=64)] = Field(default_factory=list)
    generalize: bool = Field(
        True,
        description="Finish with cloud-init clean, an empty machine-id and no SSH host keys, "
        "authorized_keys or shell history.",
    )
    template: UserTemplate | None = None
    tags: Tags = Field(default_factory=dict, description="Tags (labels on GCP) on every artifact.")
    credentials: Credentials | None = None
    secret_variables: Annotated[
        list[SecretVariable],
        Field(max_length=20),
        unique_by("name", message="secret variable names must be unique"),
    ] = Field(default_factory=list)
    build: BuildPolicy | None = None
    validation: Validation | None = None
    rebuild: RebuildPolicy | None = None
    retention: RetentionPolicy | None = None

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

    def credentials_for(self, cloud: CloudName) -> CloudCredentials | None:
        return self.credentials.of(cloud) if self.credentials is not None else None

    def target(self, name: str) -> Target:
        """The target called `name`; LookupError when there is none."""
        found = next((t for t in self.targets if t.name == name), None)
        if found is None:
            raise LookupError(f"no target named {name!r}")
        return found


class GoldenImageStatus(Model):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    latest_version: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    latest_build: ObjectName | None = None
    latest_validated_version: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    latest_validated_build: ObjectName | None = None
    fingerprint: Annotated[str, Field(max_length=71)] | None = None
    sources: Annotated[dict[str, Annotated[str, Field(max_length=1024)]], Field(max_length=16)] = Field(
        default_factory=dict, description="Source image each target resolved to, by target name."
    )
    last_build_at: datetime | None = None
    next_rebuild_at: datetime | None = None
    handled_rebuild_token: Annotated[str, Field(max_length=256)] | None = Field(
        None, description="The last goldenimage.io/rebuild annotation value that started a build."
    )
    conditions: ConditionList = Field(default_factory=list)
