"""The GCP adapter against the Compute Engine fake through the TLS edge, with the real
google-cloud-compute SDK at its default endpoints: every method of the CloudApi Protocol, what it
refuses (foreign images, operator label keys, families with members it does not own) and how the
cloud's refusals reach the operator (a missing project, a denied permission, refused credentials).

Validation instances boot real machines in the lab, so that the SSH key passed in the instance's
metadata is proven to log in. Run inside the lab:
python -m goldenimage_dev.machines lab -- python -m pytest <this file>.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import compute_v1
from google.oauth2 import service_account
from pydantic import ValidationError

from goldenimage.api import labels
from goldenimage.api.errors import (
    CloudError,
    CloudRefusedError,
    ForeignArtifactError,
    SourceNotFoundError,
)
from goldenimage.api.goldenimage import Target, Validation
from goldenimage.api.imagechannel import GcpPublish, Label
from goldenimage.clouds.base import CloudResource, Pointer, PublishScope
from goldenimage.clouds.gcp.adapter import GcpApi
from goldenimage.clouds.gcp.kind import CREDENTIALS_ENV, KIND, image_path
from goldenimage.clouds.gcp.publish import CHANNEL_KEY, copy_name
from goldenimage_dev.edge import Edge
from goldenimage_dev.fakes.gce import ComputeEngine
from goldenimage_dev.fakes.hypervisor import Recorder
from goldenimage_dev.machines.hypervisor import Machines
from support import lab as labs

pytestmark = pytest.mark.integration

PROJECT = "platform-images"
OTHER = "team-images"  # a second project a target builds in: found only once the adapter met it
PUBLIC = "debian-cloud"
ZONE = "europe-west1-b"
STORAGE = "europe-west1"
OLD_DEBIAN = "debian-12-bookworm-v20250210"
NEW_DEBIAN = "debian-12-bookworm-v20250428"
BUILD = "web-base-7-1a2b3c4d"


@dataclass
class Cloud:
    gce: ComputeEngine
    edge: Edge
    key: dict[str, str]  # the service-account key a Secret would hold
    key_file: Path

    def api(self, credentials: Mapping[str, str] | None = None) -> GcpApi:
        return GcpApi(credentials={CREDENTIALS_ENV: json.dumps(self.key)} if credentials is None else credentials)

    @property
    def sdk_credentials(self) -> service_account.Credentials:
        return service_account.Credentials.from_service_account_info(self.key)

    def images(self) -> compute_v1.ImagesClient:
        return compute_v1.ImagesClient(credentials=self.sdk_credentials)

    def requests_to(self, path: str) -> int:
        return sum(1 for e in self.edge.exchanges if e.path.split("?")[0].endswith(path))

    def names(self, project: str = PROJECT) -> set[str]:
        return {i["name"] for i in self.gce.images(project)}


def _start(directory: Path, gce: ComputeEngine) -> Iterator[Cloud]:
    """Seed `gce` as the examples see GCP, serve it behind a new edge, and point this process at
    the edge for the test."""
    for name, month in ((OLD_DEBIAN, 2), (NEW_DEBIAN, 4)):
        gce.add_image(PUBLIC, name, family="debian-12", created=datetime.datetime(2025, month, 10, tzinfo=datetime.UTC))
    gce.add_project(OTHER)
    key = gce.service_account_key(PROJECT, "operator")
    key_file = directory / "operator.json"
    key_file.write_text(json.dumps(key))
    edge = Edge.start(directory / "edge", gce.routes())
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in edge.env().items():
                env.setenv(name, value)
            env.delenv(CREDENTIALS_ENV, raising=False)
            env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
            yield Cloud(gce, edge, key, key_file)
    finally:
        edge.stop()
    assert edge.refused == [], "nothing but the fake's hosts was asked for"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    """The fake with machines that are only recorded (no instance here needs to answer)."""
    yield from _start(tmp_path, ComputeEngine(Recorder()))


def _target(source: dict[str, str] | None = None, project: str = PROJECT, **gcp: Any) -> Target:
    return Target.model_validate(
        {
            "name": "gcp-eu",
            "gcp": {
                "project": project,
                "zone": ZONE,
                "machineType": "e2-small",
                "source": source or {"family": "debian-12", "project": PUBLIC},
                "storageLocations": [STORAGE],
                **gcp,
            },
        }
    )


def _labels(build_id: str, *, target: str = "gcp-eu", attempt: int | None = 1, **extra: str) -> dict[str, str]:
    """What the renderer puts on what Packer makes, spelled as GCP labels."""
    tags = {
        labels.BUILD_ID: build_id,
        labels.IMAGE: "web-base",
        labels.NAMESPACE: "platform",
        labels.VERSION: "7",
        labels.TARGET: target,
        labels.MANAGED_BY: labels.MANAGER,
        **extra,
    }
    if attempt is not None:
        tags[labels.ATTEMPT] = str(attempt)
    return KIND.tags(tags)


def _image(
    cloud: Cloud, name: str, image_labels: Mapping[str, str] | None = None, *, project: str = PROJECT, **fields: Any
) -> str:
    """An image made as Packer makes one (from the source image, stored where the target says);
    returns its recorded id."""
    cloud.images().insert(
        project=project,
        image_resource=compute_v1.Image(
            name=name,
            source_image=f"projects/{PUBLIC}/global/images/{NEW_DEBIAN}",
            labels=dict(image_labels or {}),
            storage_locations=[STORAGE],
            **fields,
        ),
    ).result()
    return image_path(project, name)


def _builder(cloud: Cloud, build_id: str, attempt: int, *, target: str = "gcp-eu", project: str = PROJECT) -> str:
    """What Packer 1.6.6 starts for one attempt: an instance named after the build, target and
    attempt, labelled, whose boot disk has the instance's name, no labels and no autoDelete."""
    name = f"packer-{build_id}-{target}-a{attempt}"
    compute_v1.InstancesClient(credentials=cloud.sdk_credentials).insert(
        project=project,
        zone=ZONE,
        instance_resource=compute_v1.Instance(
            name=name,
            machine_type=f"zones/{ZONE}/machineTypes/e2-small",
            labels=_labels(build_id, target=target, attempt=attempt),
            network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
            disks=[
                compute_v1.AttachedDisk(
                    boot=True,
                    initialize_params=compute_v1.AttachedDiskInitializeParams(
                        source_image=f"projects/{PUBLIC}/global/images/family/debian-12"
                    ),
                )
            ],
        ),
    ).result()
    return name


def _zoned(kind: str, name: str, project: str = PROJECT) -> CloudResource:
    return CloudResource(kind, ZONE, f"projects/{project}/zones/{ZONE}/{kind}s/{name}")


# -- credentials ------------------------------------------------------------------------------


def test_a_secrets_service_account_key_and_application_default_credentials_both_work(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cloud.api().resolve_source(_target()) == NEW_DEBIAN
    assert cloud.api().compute.default_project() == PROJECT
    # No Secret: the process's own identity, here a key file named by GOOGLE_APPLICATION_CREDENTIALS
    # (in a cluster, Workload Identity through the metadata server).
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(cloud.key_file))
    assert cloud.api({}).resolve_source(_target()) == NEW_DEBIAN
    # A Job has the Secret as its environment.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    monkeypatch.setenv(CREDENTIALS_ENV, json.dumps(cloud.key))
    assert cloud.api({}).resolve_source(_target()) == NEW_DEBIAN


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKIA"}, "has no GOOGLE_CREDENTIALS key"),
        ({CREDENTIALS_ENV: "/var/run/secrets/operator.json"}, "not a JSON document"),
        (
            {CREDENTIALS_ENV: json.dumps({"type": "external_account", "credential_source": {"file": "/etc/shadow"}})},
            "not a service-account key",
        ),
        ({CREDENTIALS_ENV: json.dumps({"type": "service_account", "project_id": PROJECT})}, "not a usable"),
    ],
)
def test_a_secret_that_holds_no_service_account_key_is_refused_without_falling_back(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, secret: dict[str, str], message: str
) -> None:
    # The operator's own identity is there, and must not be used in the Secret's place.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(cloud.key_file))
    requests = len(cloud.edge.exchanges)
    with pytest.raises(CloudRefusedError, match=message):
        cloud.api(secret).resolve_source(_target())
    assert len(cloud.edge.exchanges) == requests


def test_a_key_the_cloud_does_not_know_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    stranger = ComputeEngine().service_account_key(PROJECT, "stranger")
    with pytest.raises(CloudRefusedError, match="credentials were refused"):
        cloud.api({CREDENTIALS_ENV: json.dumps(stranger)}).resolve_source(_target())


# -- sources ----------------------------------------------------------------------------------


def test_a_family_resolves_to_its_newest_usable_image_and_an_explicit_image_as_written(cloud: Cloud) -> None:
    gcp = cloud.api()
    assert gcp.resolve_source(_target({"image": OLD_DEBIAN, "project": PUBLIC})) is None
    assert gcp.resolve_source(_target()) == NEW_DEBIAN

    # A new member of the family: a new source, so a new version with onSourceChange.
    newest = "debian-12-bookworm-v20250601"
    cloud.gce.add_image(PUBLIC, newest, family="debian-12", created=datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC))
    assert gcp.resolve_source(_target()) == newest

    images = cloud.images()
    images.deprecate(
        project=PUBLIC, image=newest, deprecation_status_resource=compute_v1.DeprecationStatus(state="DEPRECATED")
    ).result()
    assert gcp.resolve_source(_target()) == NEW_DEBIAN

    # Revoked (the operator's label) but not deprecated: GCE's own choice is passed over.
    fingerprint = images.get(project=PUBLIC, image=NEW_DEBIAN).label_fingerprint
    revoked = {KIND.tag_key(labels.REVOKED): "cve-2026-0001"}
    request = compute_v1.GlobalSetLabelsRequest(labels=revoked, label_fingerprint=fingerprint)
    images.set_labels(project=PUBLIC, resource=NEW_DEBIAN, global_set_labels_request_resource=request).result()
    assert images.get_from_family(project=PUBLIC, family="debian-12").name == NEW_DEBIAN
    assert gcp.resolve_source(_target()) == OLD_DEBIAN

    images.deprecate(
        project=PUBLIC, image=OLD_DEBIAN, deprecation_status_resource=compute_v1.DeprecationStatus(state="OBSOLETE")
    ).result()
    with pytest.raises(SourceNotFoundError, match=r"debian-12 in project debian-cloud has no usable image \(3 members"):
        gcp.resolve_source(_target())


def test_a_family_in_the_targets_own_project_when_the_source_names_none(cloud: Cloud) -> None:
    _image(cloud, "base-1", family="base")
    assert cloud.api().resolve_source(_target({"family": "base"})) == "base-1"
    with pytest.raises(SourceNotFoundError, match="image family base in project team-images has no usable image"):
        cloud.api().resolve_source(_target({"family": "base"}, project=OTHER))


def test_a_missing_project_or_a_denied_permission_is_a_refusal_not_a_retry(cloud: Cloud) -> None:
    with pytest.raises(CloudRefusedError, match="does the project, zone or resource exist"):
        cloud.api().resolve_source(_target({"family": "debian-12", "project": "no-such-project"}))
    with pytest.raises(CloudRefusedError, match="zone europe-west9-z does not exist in project platform-images"):
        cloud.api().resolve_source(_target(zone="europe-west9-z"))
    with pytest.raises(CloudRefusedError, match="zone europe-west1-b does not exist in project no-such-project"):
        cloud.api().resolve_source(_target(project="no-such-project"))
    gcp = cloud.api()
    before = cloud.requests_to(f"/zones/{ZONE}")
    gcp.resolve_source(_target())
    gcp.resolve_source(_target())
    assert cloud.requests_to(f"/zones/{ZONE}") == before + 1, "a zone found once is not asked for again"
    cloud.gce.deny(PUBLIC, "compute.images.getFromFamily")
    with pytest.raises(CloudRefusedError, match=r"compute\.images\.getFromFamily.*lack this permission"):
        cloud.api().resolve_source(_target())


# -- artifacts --------------------------------------------------------------------------------


def test_artifacts_are_found_by_build_id_in_every_project_the_adapter_met(cloud: Cloud) -> None:
    gcp = cloud.api()
    mine = _image(cloud, f"{BUILD}-a1", _labels(BUILD))
    elsewhere = _image(cloud, f"{BUILD}-a2", _labels(BUILD, attempt=2), project=OTHER)
    _image(cloud, "web-base-8-99999999-a1", _labels("web-base-8-99999999"))
    _image(cloud, "unlabelled")
    # The credentials' project only, until a target names the other one.
    assert gcp.find_artifacts(BUILD, [STORAGE]) == [CloudResource("image", STORAGE, mine)]
    gcp.resolve_source(_target(project=OTHER))
    assert sorted(gcp.find_artifacts(BUILD, [STORAGE]), key=str) == [
        CloudResource("image", STORAGE, mine),
        CloudResource("image", STORAGE, elsewhere),
    ]


def test_finding_artifacts_reads_every_page(cloud: Cloud) -> None:
    for n in range(501):  # the API's pages hold at most 500
        cloud.gce.add_image(PROJECT, f"{BUILD}-{n:03d}", labels=_labels(BUILD, attempt=None))
    before = cloud.requests_to(f"/projects/{PROJECT}/global/images")
    found = cloud.api().find_artifacts(BUILD, [STORAGE])
    assert len({r.id for r in found}) == 501
    assert cloud.requests_to(f"/projects/{PROJECT}/global/images") - before == 2


def test_deleting_an_artifact_needs_the_builds_label(cloud: Cloud) -> None:
    gcp = cloud.api()
    foreign = _image(cloud, "somebody-elses", {"team": "other"})
    other_build = _image(cloud, "web-base-8-99999999-a1", _labels("web-base-8-99999999"))
    for image in (foreign, other_build):
        with pytest.raises(ForeignArtifactError, match=f"does not carry {labels.BUILD_ID}={BUILD}"):
            gcp.delete_artifact(STORAGE, image, BUILD)
    assert {"somebody-elses", "web-base-8-99999999-a1"} <= cloud.names()

    mine = _image(cloud, f"{BUILD}-a1", _labels(BUILD))
    assert gcp.delete_artifact(STORAGE, mine, BUILD) == [CloudResource("image", STORAGE, mine)]
    assert f"{BUILD}-a1" not in cloud.names()
    # Gone already: nothing to do, and no error.
    assert gcp.delete_artifact(STORAGE, mine, BUILD) == []


def test_missing_artifacts_are_the_deleted_and_the_obsolete(cloud: Cloud) -> None:
    gcp = cloud.api()
    kept, deprecated, obsolete, deleted = (
        _image(cloud, f"{BUILD}-{n}", _labels(BUILD)) for n in ("kept", "deprecated", "obsolete", "deleted")
    )
    images = cloud.images()
    for image, state in ((deprecated, "DEPRECATED"), (obsolete, "OBSOLETE")):
        status = compute_v1.DeprecationStatus(state=state)
        images.deprecate(project=PROJECT, image=image.rsplit("/", 1)[1], deprecation_status_resource=status).result()
    gcp.delete_artifact(STORAGE, deleted, BUILD)
    everything = [(STORAGE, i) for i in (kept, deprecated, obsolete, deleted)]
    # Deprecated images still launch; obsolete ones refuse new disks.
    assert gcp.missing_artifacts(everything) == {(STORAGE, obsolete), (STORAGE, deleted)}
    assert gcp.missing_artifacts([]) == set()


def test_revocation_labels_and_deprecates_so_the_image_is_no_longer_a_source(cloud: Cloud) -> None:
    gcp = cloud.api()
    base = _target({"family": "golden"})
    first = _image(cloud, "golden-1", family="golden")
    second = _image(cloud, "golden-2", family="golden")
    assert gcp.resolve_source(base) == "golden-2"

    assert gcp.deprecate(STORAGE, second, "CVE-2026-1234") is None
    image = cloud.gce.image(PROJECT, "golden-2")
    assert image is not None
    assert image["labels"][KIND.tag_key(labels.REVOKED)] == "cve-2026-1234"
    assert image["deprecated"] == {"state": "DEPRECATED"}
    assert gcp.resolve_source(base) == "golden-1"
    assert cloud.images().get_from_family(project=PROJECT, family="golden").name == "golden-1"
    # The image itself still launches: instances and templates naming it keep working.
    assert gcp.missing_artifacts([(STORAGE, second)]) == set()

    # Again: nothing changes. A deprecation someone made stronger (OBSOLETE) is kept.
    operations = cloud.requests_to("/deprecate")
    assert gcp.deprecate(STORAGE, second, "CVE-2026-1234") is None
    assert cloud.requests_to("/deprecate") == operations
    status = compute_v1.DeprecationStatus(state="OBSOLETE")
    cloud.images().deprecate(project=PROJECT, image="golden-1", deprecation_status_resource=status).result()
    gcp.deprecate(STORAGE, first, "CVE-2026-9999")
    obsolete = cloud.gce.image(PROJECT, "golden-1")
    assert obsolete is not None and obsolete["deprecated"]["state"] == "OBSOLETE"
    # A revoked image that no longer exists: nothing to do.
    assert gcp.deprecate(STORAGE, image_path(PROJECT, "never-was"), "CVE-2026-1234") is None


# -- leftovers --------------------------------------------------------------------------------


def test_an_attempts_sweep_takes_its_instance_its_unlabelled_disk_and_its_unrecorded_image(cloud: Cloud) -> None:
    gcp = cloud.api()
    first = _builder(cloud, BUILD, 1)
    # Attempt 1 was killed after Packer deleted its instance: only the disk (no labels) is left.
    second = _builder(cloud, BUILD, 2)
    compute_v1.InstancesClient(credentials=cloud.sdk_credentials).delete(
        project=PROJECT, zone=ZONE, instance=second
    ).result()
    third = _builder(cloud, BUILD, 3)  # still running
    other = _builder(cloud, "web-base-8-99999999", 1)
    image = _image(cloud, f"{BUILD}-a2", _labels(BUILD, attempt=2))
    recorded = _image(cloud, f"{BUILD}-a3", _labels(BUILD, attempt=3))

    assert gcp.leftovers(BUILD, [STORAGE], "gcp-eu", 2) == [
        _zoned("disk", second),
        CloudResource("image", STORAGE, image),
    ]
    assert set(gcp.leftovers(BUILD, [STORAGE], "gcp-eu", 1)) == {_zoned("instance", first), _zoned("disk", first)}

    swept = gcp.sweep(BUILD, [STORAGE], "gcp-eu", 1) + gcp.sweep(BUILD, [STORAGE], "gcp-eu", 2)
    assert set(swept) == {
        _zoned("instance", first),
        _zoned("disk", first),
        _zoned("disk", second),
        CloudResource("image", STORAGE, image),
    }
    assert gcp.leftovers(BUILD, [STORAGE], "gcp-eu", 1) == gcp.leftovers(BUILD, [STORAGE], "gcp-eu", 2) == []
    assert {i["name"] for i in cloud.gce.instances()} == {third, other}
    assert {d["name"] for d in cloud.gce.disks()} == {third, other}
    assert recorded.rsplit("/", 1)[1] in cloud.names()


def test_a_builds_sweep_takes_every_attempt_and_validation_but_no_image(cloud: Cloud) -> None:
    gcp = cloud.api()
    gcp.resolve_source(_target(project=OTHER))  # the adapter meets the other project
    attempt = _builder(cloud, BUILD, 1)
    elsewhere = _builder(cloud, BUILD, 1, project=OTHER)
    other = _builder(cloud, "web-base-8-99999999", 1)
    validation = gcp.launch(
        _target(), STORAGE, _image(cloud, f"{BUILD}-a1", _labels(BUILD)), None, _validation_tags(BUILD)
    )
    _, _, validation_name = validation.id.rsplit("/", 2)

    found = set(gcp.leftovers(BUILD, [STORAGE]))
    assert found == {
        _zoned("instance", attempt),
        _zoned("disk", attempt),
        _zoned("instance", validation_name),
        _zoned("disk", validation_name),  # goes with its instance (autoDelete): swept all the same
        _zoned("instance", elsewhere, OTHER),
        _zoned("disk", elsewhere, OTHER),
    }
    # Only what is found in one target's name: the build's other targets are left alone.
    assert gcp.leftovers(BUILD, [STORAGE], "gcp-us") == []
    assert set(gcp.sweep(BUILD, [STORAGE])) == found
    assert {i["name"] for i in cloud.gce.instances()} == {other}
    assert {d["name"] for d in cloud.gce.disks()} == {other}
    assert f"{BUILD}-a1" in cloud.names()


def test_a_sweep_reports_what_it_could_not_delete_and_deletes_the_rest(cloud: Cloud) -> None:
    gcp = cloud.api()
    first = _builder(cloud, BUILD, 1)
    cloud.gce.deny(PROJECT, "compute.disks.delete")
    with pytest.raises(CloudRefusedError, match=rf"disk .*{first}.*compute\.disks\.delete"):
        gcp.sweep(BUILD, [STORAGE], "gcp-eu", 1)
    assert cloud.gce.instances() == []
    cloud.gce.allow(PROJECT, "compute.disks.delete")
    assert gcp.sweep(BUILD, [STORAGE], "gcp-eu", 1) == [_zoned("disk", first)]


def test_leftovers_are_read_across_pages(cloud: Cloud) -> None:
    # Seeded through the fake's own API: 501 builder instances with labelled disks, on recorded
    # machines with room for as many addresses.
    assert isinstance(cloud.gce.hypervisor, Recorder)
    cloud.gce.hypervisor.network = "10.250.0.0/22"
    for n in range(501):
        body = {
            "name": f"packer-{BUILD}-gcp-eu-a1-{n:03d}",
            "machineType": f"zones/{ZONE}/machineTypes/e2-micro",
            "labels": _labels(BUILD),
            "networkInterfaces": [{"network": "global/networks/default"}],
            "disks": [
                {
                    "boot": True,
                    "initializeParams": {
                        "sourceImage": f"projects/{PUBLIC}/global/images/{NEW_DEBIAN}",
                        "labels": _labels(BUILD),
                    },
                }
            ],
        }
        cloud.gce.insert_instance(PROJECT, ZONE, body, "seed", {})
    instances = cloud.requests_to(f"/projects/{PROJECT}/aggregated/instances")
    disks = cloud.requests_to(f"/projects/{PROJECT}/aggregated/disks")
    found = cloud.api().leftovers(BUILD, [STORAGE], "gcp-eu", 1)
    assert sum(1 for r in found if r.kind == "instance") == sum(1 for r in found if r.kind == "disk") == 501
    assert cloud.requests_to(f"/projects/{PROJECT}/aggregated/instances") - instances == 2  # 500 + 1
    assert cloud.requests_to(f"/projects/{PROJECT}/aggregated/disks") - disks == 3  # by label (2), by name (1)


def test_the_name_search_is_a_filter_gce_accepts(cloud: Cloud) -> None:
    """GCE refuses regular expressions (`eq`) mixed with AIP-160 filters in one request: the
    adapter asks for the builder's disks by name on their own."""
    client = compute_v1.DisksClient(credentials=cloud.sdk_credentials)
    mixed = compute_v1.AggregatedListDisksRequest(project=PROJECT, filter='name eq packer-.+ AND labels.a = "b"')
    with pytest.raises(BadRequest, match="Invalid list filter expression"):
        list(client.aggregated_list(request=mixed))
    _builder(cloud, BUILD, 1)
    assert _zoned("disk", f"packer-{BUILD}-gcp-eu-a1") in cloud.api().leftovers(BUILD, [STORAGE], "gcp-eu", 1)


# -- validation instances ---------------------------------------------------------------------


def _validation_tags(build_id: str) -> dict[str, str]:
    return {
        labels.BUILD_ID: build_id,
        labels.TARGET: "gcp-eu",
        labels.ROLE: labels.ROLE_VALIDATION,
        labels.MANAGED_BY: labels.MANAGER,
        "Name": f"validate-{build_id}-gcp-eu",
    }


def test_a_validation_instance_is_labelled_private_and_goes_with_its_disk(cloud: Cloud) -> None:
    gcp = cloud.api()
    image = _image(cloud, f"{BUILD}-a1", _labels(BUILD))
    launched = gcp.launch(_target(), STORAGE, image, Validation(), _validation_tags(BUILD))
    assert launched.region == ZONE and launched.address is None
    [instance] = cloud.gce.instances()
    assert instance["labels"] == KIND.tags(_validation_tags(BUILD))
    assert instance["name"].startswith(f"validate-{BUILD}-") and len(instance["name"]) <= 63
    assert "accessConfigs" not in instance["networkInterfaces"][0]  # no public address
    metadata = {i["key"]: i["value"] for i in instance["metadata"]["items"]}
    assert metadata["ssh-keys"].startswith("packer:ssh-ed25519 ")
    assert metadata["enable-oslogin"] == "FALSE"
    [disk] = cloud.gce.disks()
    assert disk["sourceImage"].endswith(f"/projects/{PROJECT}/global/images/{BUILD}-a1")
    assert disk["labels"] == instance["labels"]

    ready = gcp.ready(launched)
    assert ready is not None and ready.address == instance["networkInterfaces"][0]["networkIP"]
    gcp.terminate(ready)
    assert cloud.gce.instances() == cloud.gce.disks() == []
    gcp.terminate(ready)  # gone already: terminated
    with pytest.raises(CloudError, match="is gone"):
        gcp.ready(launched)
    with pytest.raises(CloudError, match="no SSH key"):
        gcp.run_command(ready, "true", 10)


def test_a_launch_that_fails_leaves_nothing(cloud: Cloud) -> None:
    gcp = cloud.api()
    with pytest.raises(CloudRefusedError, match="resource cannot be found"):
        gcp.launch(_target(), STORAGE, image_path(PROJECT, "never-built"), None, _validation_tags(BUILD))
    cloud.gce.set_quota(PROJECT, "CPUS", 1)  # e2-small has 2
    image = _image(cloud, f"{BUILD}-a1", _labels(BUILD))
    with pytest.raises(CloudRefusedError, match="quota"):
        gcp.launch(_target(), STORAGE, image, None, _validation_tags(BUILD))
    cloud.gce.set_quota(PROJECT, "CPUS", None)
    with pytest.raises(CloudRefusedError, match="does the project, zone or resource exist"):
        gcp.launch(_target(zone="europe-west9-z"), STORAGE, image, None, _validation_tags(BUILD))
    assert cloud.gce.instances() == cloud.gce.disks() == []


@pytest.fixture
def machines_cloud(tmp_path: Path) -> Iterator[Cloud]:
    """The fake on real machines of the lab."""
    labs.require()
    machines = Machines(tmp_path / "machines")
    try:
        yield from _start(tmp_path, ComputeEngine(machines))
    finally:
        machines.close()


def test_commands_run_as_root_over_ssh_with_the_key_made_for_the_instance(machines_cloud: Cloud) -> None:
    cloud = machines_cloud
    gcp = cloud.api()
    image = _image(cloud, f"{BUILD}-a1", _labels(BUILD))
    launched = gcp.launch(_target(), STORAGE, image, Validation(), _validation_tags(BUILD))
    try:
        ready = gcp.ready(launched)
        assert ready is not None and ready.address is not None
        assert gcp.run_command(ready, "id -un; hostname", 60) == (0, f"root\n{launched.id.rsplit('/', 1)[1]}")
        code, output = gcp.run_command(ready, "echo failing >&2; exit 3", 60)
        assert (code, output) == (3, "failing")
    finally:
        gcp.terminate(launched)
    assert cloud.gce.instances() == cloud.gce.disks() == []


# -- publication ------------------------------------------------------------------------------

SCOPE = PublishScope(namespace="platform", image="web-base", channel="candidate")


def _version(cloud: Cloud, version: int, *, project: str = PROJECT, namespace: str = "platform") -> str:
    build_id = f"web-base-{version}-0000000{version}"
    return _image(
        cloud,
        f"{build_id}-a1",
        KIND.tags(
            {
                labels.BUILD_ID: build_id,
                labels.IMAGE: "web-base",
                labels.NAMESPACE: namespace,
                labels.VERSION: str(version),
                labels.TARGET: "gcp-eu",
                labels.ATTEMPT: "1",
                labels.MANAGED_BY: labels.MANAGER,
            }
        ),
        project=project,
    )


def _carrying(cloud: Cloud, key: str, value: str, project: str = PROJECT) -> set[str]:
    return {i["name"] for i in cloud.gce.images(project) if i["labels"].get(key) == value}


def _pointer(image: str) -> Pointer:
    return Pointer("gcp-eu", STORAGE, image)


def test_the_channel_label_moves_new_first_and_only_within_the_channels_images(cloud: Cloud) -> None:
    gcp = cloud.api()
    publish = GcpPublish.model_validate({"label": {"key": "channel-candidate", "value": "current"}})
    v1, v2 = _version(cloud, 1), _version(cloud, 2)

    changes = gcp.publish(SCOPE, publish, [_pointer(v1)], [])
    assert changes == [f"label channel-candidate=current on {v1}"]
    assert _carrying(cloud, "channel-candidate", "current") == {v1.rsplit("/", 1)[1]}
    assert gcp.publish(SCOPE, publish, [_pointer(v1)], []) == []  # idempotent

    # Someone else's image with the same label is not ours to remove.
    _image(cloud, "theirs", {"channel-candidate": "current"})
    before = len(cloud.edge.exchanges)
    assert gcp.publish(SCOPE, publish, [_pointer(v2)], [_pointer(v1)]) == [
        f"label channel-candidate=current on {v2}",
        f"label channel-candidate=current removed from {v1}",
    ]
    assert _carrying(cloud, "channel-candidate", "current") == {v2.rsplit("/", 1)[1], "theirs"}
    set_labels = [e.path for e in cloud.edge.exchanges[before:] if e.path.split("?")[0].endswith("/setLabels")]
    assert [p.split("/")[-2] for p in set_labels] == [v2.rsplit("/", 1)[1], v1.rsplit("/", 1)[1]]

    # Pointing at an image of another namespace, or with a key that is the operator's own: refused.
    stranger = _version(cloud, 3, namespace="other-team")
    with pytest.raises(CloudError, match="is not one of platform/web-base"):
        gcp.publish(SCOPE, publish, [_pointer(stranger)], [_pointer(v2)])
    # Admission refuses such a key; the publisher refuses it too (an object stored before the rule).
    with pytest.raises(ValidationError, match="are the operator's"):
        GcpPublish.model_validate({"label": {"key": KIND.tag_key(labels.BUILD_ID), "value": "x"}})
    operator_key = GcpPublish.model_construct(label=Label.model_construct(key=KIND.tag_key(labels.BUILD_ID), value="x"))
    with pytest.raises(CloudError, match="operator's own"):
        gcp.publish(SCOPE, operator_key, [_pointer(v2)], [])
    assert _carrying(cloud, "channel-candidate", "current") == {v2.rsplit("/", 1)[1], "theirs"}


def _family_state(cloud: Cloud, family: str, project: str = PROJECT) -> dict[str, str]:
    return {
        i["name"]: i.get("deprecated", {}).get("state", "ACTIVE")
        for i in cloud.gce.images(project)
        if i.get("family") == family
    }


def test_the_channels_family_follows_promotion_and_rollback_as_a_family_reader_sees_it(cloud: Cloud) -> None:
    gcp = cloud.api()
    family = "web-base-candidate"
    publish = GcpPublish.model_validate({"family": family, "label": {"key": "channel-candidate", "value": "current"}})
    v1, v2 = _version(cloud, 1), _version(cloud, 2)
    c1, c2 = (copy_name(family, v.rsplit("/", 1)[1]) for v in (v1, v2))
    images = cloud.images()

    def resolved() -> compute_v1.Image:
        """What Terraform's google_compute_image data source with `family` reads."""
        return images.get_from_family(project=PROJECT, family=family)

    changes = gcp.publish(SCOPE, publish, [_pointer(v1)], [])
    assert f"copied {v1} into family {family} as {c1}" in changes
    assert resolved().name == c1
    copy = cloud.gce.image(PROJECT, c1)
    assert copy is not None
    assert copy["labels"][CHANNEL_KEY] == "candidate"
    assert copy["labels"][KIND.tag_key(labels.VERSION)] == "1"
    # The copy is the channel's, not an attempt's, and does not carry the channel label itself.
    assert KIND.tag_key(labels.ATTEMPT) not in copy["labels"] and "channel-candidate" not in copy["labels"]
    assert copy["storageLocations"] == [STORAGE]
    built = cloud.gce.image(PROJECT, v1.rsplit("/", 1)[1])
    assert built is not None and "family" not in built  # the build's image joins no family

    gcp.publish(SCOPE, publish, [_pointer(v2)], [_pointer(v1)])
    assert resolved().name == c2
    assert _family_state(cloud, family) == {c1: "DEPRECATED", c2: "ACTIVE"}
    old = cloud.gce.image(PROJECT, c1)
    assert old is not None and old["deprecated"]["replacement"].endswith(f"/projects/{PROJECT}/global/images/{c2}")
    assert gcp.publish(SCOPE, publish, [_pointer(v2)], [_pointer(v1)]) == []  # idempotent

    # Rollback: the older copy is active again, the newer one deprecated in its favour.
    changes = gcp.publish(SCOPE, publish, [_pointer(v1)], [_pointer(v2)])
    assert f"{c1} active again in family {family}" in changes
    assert resolved().name == c1
    assert _family_state(cloud, family) == {c1: "ACTIVE", c2: "DEPRECATED"}

    # The channel stops publishing to this project: nothing of it resolves any more.
    gcp.publish(SCOPE, publish, [], [_pointer(v1)])
    assert _family_state(cloud, family) == {c1: "DEPRECATED", c2: "DEPRECATED"}
    assert _carrying(cloud, "channel-candidate", "current") == set()

    # Deleting a version's build deletes its copy with it: the copy carries the build id.
    build_id = "web-base-2-00000002"
    found = {r.id for r in gcp.find_artifacts(build_id, [STORAGE])}
    assert found == {v2, image_path(PROJECT, c2)}


def test_a_family_with_members_the_channel_does_not_own_is_left_alone(cloud: Cloud) -> None:
    gcp = cloud.api()
    publish = GcpPublish.model_validate({"family": "shared-family"})
    _image(cloud, "someone-elses", family="shared-family")
    v1 = _version(cloud, 1)
    with pytest.raises(CloudError, match=r"has members channel platform/candidate does not own \(someone-elses\)"):
        gcp.publish(SCOPE, publish, [_pointer(v1)], [])
    assert _family_state(cloud, "shared-family") == {"someone-elses": "ACTIVE"}

    # The copy's name taken by an image that is not the channel's copy: refused too.
    taken = copy_name("fresh-family", v1.rsplit("/", 1)[1])
    _image(cloud, taken)
    with pytest.raises(CloudError, match="is not channel platform/candidate's copy"):
        gcp.publish(SCOPE, GcpPublish.model_validate({"family": "fresh-family"}), [_pointer(v1)], [])


def test_two_targets_in_one_project_cannot_share_a_family(cloud: Cloud) -> None:
    gcp = cloud.api()
    v1, v2 = _version(cloud, 1), _version(cloud, 2)
    pointers = [Pointer("gcp-eu", STORAGE, v1), Pointer("gcp-us", "us-central1", v2)]
    with pytest.raises(CloudError, match="targets gcp-eu, gcp-us all build in project platform-images"):
        gcp.publish(SCOPE, GcpPublish.model_validate({"family": "web-base-candidate"}), pointers, [])


def test_publication_across_projects(cloud: Cloud) -> None:
    gcp = cloud.api()
    family = "web-base-candidate"
    publish = GcpPublish.model_validate({"family": family})
    here, there = _version(cloud, 1), _version(cloud, 1, project=OTHER)
    pointers = [Pointer("gcp-eu", STORAGE, here), Pointer("gcp-us", STORAGE, there)]
    gcp.publish(SCOPE, publish, pointers, [])
    for project, image in ((PROJECT, here), (OTHER, there)):
        assert _family_state(cloud, family, project) == {copy_name(family, image.rsplit("/", 1)[1]): "ACTIVE"}
    # The target in the other project is removed from the image: its family is retired there.
    gcp.publish(SCOPE, publish, pointers[:1], pointers)
    assert set(_family_state(cloud, family, OTHER).values()) == {"DEPRECATED"}
    assert set(_family_state(cloud, family, PROJECT).values()) == {"ACTIVE"}


# -- inside the build Job ---------------------------------------------------------------------


def test_nothing_to_do_inside_the_build_job(cloud: Cloud) -> None:
    gcp = cloud.api()
    assert gcp.build_watcher(_target(), BUILD, "1") is None
    assert gcp.after_build(_target(), [(STORAGE, image_path(PROJECT, f"{BUILD}-a1"))]) == []
