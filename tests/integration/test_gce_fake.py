"""The Compute Engine fake through the TLS edge, at the real host names: the google-cloud-compute
SDK with a service-account key the fake issued does everything the GCP adapter needs, errors
included; and Debian's Packer 1.6.6 builds an image with it from a network namespace that has
nothing but loopback."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.cloud import compute_v1
from google.oauth2 import service_account

from goldenimage_dev import processes
from goldenimage_dev.edge import Edge
from goldenimage_dev.fakes.gce import ComputeEngine
from goldenimage_dev.fakes.hypervisor import Boot, HypervisorError, Recorder
from support import components, procs

pytestmark = pytest.mark.integration

PROJECT = "golden-proj"
ZONE = "europe-west1-b"
DEBIAN = "debian-cloud"
NEWEST_DEBIAN = "debian-12-bookworm-v20240601"


@dataclass
class Cloud:
    gce: ComputeEngine
    recorder: Recorder
    edge: Edge
    key_file: Path
    credentials: service_account.Credentials

    def images(self) -> compute_v1.ImagesClient:
        return compute_v1.ImagesClient(credentials=self.credentials)

    def instances(self) -> compute_v1.InstancesClient:
        return compute_v1.InstancesClient(credentials=self.credentials)

    def disks(self) -> compute_v1.DisksClient:
        return compute_v1.DisksClient(credentials=self.credentials)

    def requests_to(self, path: str) -> int:
        return sum(1 for e in self.edge.exchanges if e.path.split("?")[0].endswith(path))


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    """A fresh fake behind a fresh edge, with the process's environment pointing at the edge."""
    recorder = Recorder()
    gce = ComputeEngine(recorder)
    for name, month, family in [
        ("debian-12-bookworm-v20240101", 1, "debian-12"),
        (NEWEST_DEBIAN, 6, "debian-12"),
        ("debian-11-bullseye-v20240701", 7, "debian-11"),
    ]:
        gce.add_image(DEBIAN, name, family=family, created=datetime.datetime(2024, month, 1, tzinfo=datetime.UTC))
    key_file = gce.write_service_account_key(tmp_path / "sa.json", PROJECT)
    gce.add_project("other-proj")
    edge = Edge.start(tmp_path / "edge", gce.routes())
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in edge.env().items():
                env.setenv(name, value)
            credentials = service_account.Credentials.from_service_account_file(str(key_file))
            yield Cloud(gce, recorder, edge, key_file, credentials)
    finally:
        edge.stop()
    assert edge.threads() == []
    assert edge.refused == [], "nothing but the fake's hosts was asked for"


def _instance(name: str, *, auto_delete: bool = False, labels: dict[str, str] | None = None) -> compute_v1.Instance:
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{ZONE}/machineTypes/e2-small",
        labels=labels or {},
        metadata=compute_v1.Metadata(
            items=[
                compute_v1.Items(key="ssh-keys", value="alice:ssh-ed25519 AAAAC3Nza alice@laptop"),
                compute_v1.Items(key="startup-script-status", value="notdone"),
            ]
        ),
        network_interfaces=[
            compute_v1.NetworkInterface(
                network="global/networks/default",
                access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
            )
        ],
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=auto_delete,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=f"projects/{DEBIAN}/global/images/family/debian-12", disk_size_gb=20
                ),
            )
        ],
    )


def _image_from(source: str, name: str, **fields: Any) -> compute_v1.Image:
    return compute_v1.Image(name=name, source_image=source, **fields)


def _lifecycle(machine: str) -> list[tuple[str, str]]:
    """What Packer's build does to its machine, in order."""
    return [("boot", machine), ("power_off", machine), ("snapshot", machine), ("remove", machine)]


def _reason(error: exceptions.GoogleAPICallError) -> str:
    return str(error.errors[0]["reason"])


# Credentials


def test_the_token_endpoint_grants_for_a_key_the_fake_issued(cloud: Cloud) -> None:
    """google-auth's JWT-bearer grant (Packer's way), then the token on an API call."""
    scoped = cloud.credentials.with_scopes(["https://www.googleapis.com/auth/compute"])
    scoped.refresh(Request())
    assert scoped.token.startswith("ya29.")
    with requests.Session() as session:
        url = f"https://compute.googleapis.com/compute/v1/projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
        assert session.get(url, headers={"Authorization": f"Bearer {scoped.token}"}, timeout=10).status_code == 200
        anonymous = session.get(url, timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == 401
        assert session.get(url, headers={"Authorization": "Bearer ya29.made-up"}, timeout=10).status_code == 401
    assert cloud.requests_to("/token") == 1


def test_a_key_the_fake_did_not_issue_gets_nothing(cloud: Cloud, tmp_path: Path) -> None:
    stranger = ComputeEngine().write_service_account_key(tmp_path / "other.json", PROJECT)
    credentials = service_account.Credentials.from_service_account_file(str(stranger))
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.with_scopes(["https://www.googleapis.com/auth/compute"]).refresh(Request())
    with pytest.raises(exceptions.Unauthorized):  # the SDK's self-signed JWT
        compute_v1.ImagesClient(credentials=credentials).get(project=DEBIAN, image=NEWEST_DEBIAN)


# Projects, zones, machine types


def test_zones_regions_and_machine_types(cloud: Cloud) -> None:
    zone = compute_v1.ZonesClient(credentials=cloud.credentials).get(project=PROJECT, zone=ZONE)
    assert zone.region.endswith(f"/projects/{PROJECT}/regions/europe-west1")
    region = compute_v1.RegionsClient(credentials=cloud.credentials).get(project=PROJECT, region="europe-west1")
    assert any(z.endswith(f"/zones/{ZONE}") for z in region.zones)
    machine = compute_v1.MachineTypesClient(credentials=cloud.credentials).get(
        project=PROJECT, zone=ZONE, machine_type="e2-small"
    )
    assert machine.self_link.endswith(f"/zones/{ZONE}/machineTypes/e2-small")
    with pytest.raises(exceptions.NotFound):
        compute_v1.ZonesClient(credentials=cloud.credentials).get(project=PROJECT, zone="mars-north1-a")


def test_an_unknown_project_is_404(cloud: Cloud) -> None:
    with pytest.raises(exceptions.NotFound, match="projects/no-such-project"):
        cloud.images().get(project="no-such-project", image="anything")
    assert compute_v1.ProjectsClient(credentials=cloud.credentials).get(project=PROJECT).name == PROJECT


# Images


def test_get_from_family_is_the_newest_image_that_is_not_deprecated(cloud: Cloud) -> None:
    images = cloud.images()
    assert images.get_from_family(project=DEBIAN, family="debian-12").name == NEWEST_DEBIAN
    family = f"projects/{DEBIAN}/global/images/family/debian-12"
    for n in (1, 2, 3):
        images.insert(project=PROJECT, image_resource=_image_from(family, f"golden-{n}", family="golden")).result()
    assert images.get_from_family(project=PROJECT, family="golden").name == "golden-3"

    replacement = images.get(project=PROJECT, image="golden-2").self_link
    images.deprecate(
        project=PROJECT,
        image="golden-3",
        deprecation_status_resource=compute_v1.DeprecationStatus(state="DEPRECATED", replacement=replacement),
    ).result()
    deprecated = images.get(project=PROJECT, image="golden-3").deprecated
    assert (deprecated.state, deprecated.replacement) == ("DEPRECATED", replacement)
    assert images.get_from_family(project=PROJECT, family="golden").name == "golden-2"

    images.deprecate(
        project=PROJECT, image="golden-2", deprecation_status_resource=compute_v1.DeprecationStatus(state="OBSOLETE")
    ).result()
    assert images.get_from_family(project=PROJECT, family="golden").name == "golden-1"
    with pytest.raises(exceptions.BadRequest, match="obsolete"):  # no new disks from an obsolete image
        images.insert(project=PROJECT, image_resource=_image_from("global/images/golden-2", "from-obsolete")).result()

    images.deprecate(
        project=PROJECT, image="golden-3", deprecation_status_resource=compute_v1.DeprecationStatus(state="ACTIVE")
    ).result()
    assert images.get_from_family(project=PROJECT, family="golden").name == "golden-3"
    assert "deprecated" not in compute_v1.Image.to_dict(images.get(project=PROJECT, image="golden-3"))
    with pytest.raises(exceptions.NotFound):
        images.get_from_family(project=PROJECT, family="no-such-family")


def test_images_list_by_labels_and_name_in_pages(cloud: Cloud) -> None:
    images = cloud.images()
    source = f"projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
    for n in range(5):
        labels = {"role": "web" if n % 2 == 0 else "db", "version": f"{n}-0-0", "managed-by": "operator"}
        images.insert(project=PROJECT, image_resource=_image_from(source, f"img-{n}", labels=labels)).result()

    def names(expression: str, page_size: int = 500) -> list[str]:
        request = compute_v1.ListImagesRequest(project=PROJECT, filter=expression, max_results=page_size)
        return [image.name for image in images.list(request=request)]

    assert names('labels.role = "web"') == ["img-0", "img-2", "img-4"]
    assert names('(labels.role = "web") AND (labels.version = "2-0-0")') == ["img-2"]
    assert names('labels.managed-by = "operator" AND name = "img-3"') == ["img-3"]
    assert names('labels.role = "nobody"') == []

    before = cloud.requests_to(f"/projects/{PROJECT}/global/images")
    assert names('labels.managed-by = "operator"', page_size=2) == [f"img-{n}" for n in range(5)]
    assert cloud.requests_to(f"/projects/{PROJECT}/global/images") - before == 3  # pages of 2, 2 and 1


def test_an_image_made_from_an_image_carries_its_fields(cloud: Cloud) -> None:
    images = cloud.images()
    images.insert(
        project=PROJECT,
        image_resource=_image_from(
            f"projects/{DEBIAN}/global/images/family/debian-12",
            "golden-eu",
            family="golden",
            description="a golden image",
            labels={"version": "1-0-0"},
            storage_locations=["eu"],
        ),
    ).result()
    image = images.get(project=PROJECT, image="golden-eu")
    assert (image.status, image.family, image.description) == ("READY", "golden", "a golden image")
    assert (dict(image.labels), list(image.storage_locations)) == ({"version": "1-0-0"}, ["eu"])
    assert image.source_image.endswith(f"/projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}")
    assert image.self_link == f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/global/images/golden-eu"


def test_an_existing_image_name_is_409(cloud: Cloud) -> None:
    images = cloud.images()
    source = f"projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
    images.insert(project=PROJECT, image_resource=_image_from(source, "taken")).result()
    with pytest.raises(exceptions.Conflict) as caught:
        images.insert(project=PROJECT, image_resource=_image_from(source, "taken")).result()
    assert _reason(caught.value) == "alreadyExists"


def test_set_labels_needs_the_current_fingerprint(cloud: Cloud) -> None:
    images = cloud.images()
    source = f"projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
    images.insert(project=PROJECT, image_resource=_image_from(source, "labelled", labels={"a": "1"})).result()
    stale = images.get(project=PROJECT, image="labelled").label_fingerprint
    request = compute_v1.GlobalSetLabelsRequest(labels={"a": "1", "b": "2"}, label_fingerprint=stale)
    images.set_labels(project=PROJECT, resource="labelled", global_set_labels_request_resource=request).result()
    image = images.get(project=PROJECT, image="labelled")
    assert dict(image.labels) == {"a": "1", "b": "2"}
    assert image.label_fingerprint != stale
    with pytest.raises(exceptions.PreconditionFailed) as caught:
        images.set_labels(project=PROJECT, resource="labelled", global_set_labels_request_resource=request).result()
    assert _reason(caught.value) == "conditionNotMet"


def test_a_deleted_image_is_gone(cloud: Cloud) -> None:
    images = cloud.images()
    source = f"projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
    images.insert(project=PROJECT, image_resource=_image_from(source, "short-lived")).result()
    images.delete(project=PROJECT, image="short-lived").result()
    with pytest.raises(exceptions.NotFound):
        images.get(project=PROJECT, image="short-lived")
    with pytest.raises(exceptions.NotFound):
        images.delete(project=PROJECT, image="short-lived").result()


# Instances and disks, and the machines behind them


def test_an_instance_boots_a_machine_that_its_disk_keeps_for_the_image(cloud: Cloud) -> None:
    """Packer's sequence: boot, delete the instance but not its disk, image the disk, delete it."""
    instances, disks, images = cloud.instances(), cloud.disks(), cloud.images()
    instances.insert(
        project=PROJECT, zone=ZONE, instance_resource=_instance("builder", labels={"build": "b1"})
    ).result()

    vm = instances.get(project=PROJECT, zone=ZONE, instance="builder")
    machine = f"gce-{PROJECT}-{ZONE}-builder"
    boot = cloud.recorder.running[machine]
    assert vm.status == "RUNNING"
    assert vm.network_interfaces[0].network_i_p == boot.address
    assert vm.network_interfaces[0].access_configs[0].nat_i_p == boot.address
    assert (boot.user, boot.public_keys, boot.image) == ("alice", ("ssh-ed25519 AAAAC3Nza alice@laptop",), None)
    metadata = {item.key: item.value for item in vm.metadata.items}
    assert metadata["startup-script-status"] == "done"
    assert dict(vm.labels) == {"build": "b1"}

    listed = instances.list(
        request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter="labels.build = b1")
    )
    assert [i.name for i in listed] == ["builder"]
    aggregated = instances.aggregated_list(
        request=compute_v1.AggregatedListInstancesRequest(project=PROJECT, filter='labels.build = "b1"')
    )
    assert [i.name for _, scoped in aggregated for i in scoped.instances] == ["builder"]

    disk = disks.get(project=PROJECT, zone=ZONE, disk="builder")
    assert (disk.size_gb, list(disk.users)) == (20, [vm.self_link])
    assert disk.source_image.endswith(f"/global/images/{NEWEST_DEBIAN}")

    instances.delete(project=PROJECT, zone=ZONE, instance="builder").result()
    with pytest.raises(exceptions.NotFound):
        instances.get(project=PROJECT, zone=ZONE, instance="builder")
    assert list(disks.get(project=PROJECT, zone=ZONE, disk="builder").users) == []

    source_disk = f"https://compute.googleapis.com/compute/v1/{PROJECT}/zones/{ZONE}/disks/builder"  # Packer's form
    images.insert(project=PROJECT, image_resource=compute_v1.Image(name="built", source_disk=source_disk)).result()
    image = images.get(project=PROJECT, image="built")
    assert (image.status, image.disk_size_gb, list(image.storage_locations)) == ("READY", 20, ["eu"])
    disks.delete(project=PROJECT, zone=ZONE, disk="builder").result()
    assert [d.name for d in disks.list(project=PROJECT, zone=ZONE)] == []

    assert cloud.recorder.calls == _lifecycle(machine)
    snapshot = cloud.gce.machine_image(PROJECT, "built")
    assert snapshot in cloud.recorder.images

    # An instance of the new image boots its machine image; deleting the image forgets it.
    later = _instance("second", auto_delete=True)
    later.disks[0].initialize_params.source_image = image.self_link
    instances.insert(project=PROJECT, zone=ZONE, instance_resource=later).result()
    assert cloud.recorder.running[f"gce-{PROJECT}-{ZONE}-second"].image == snapshot
    instances.delete(project=PROJECT, zone=ZONE, instance="second").result()
    images.delete(project=PROJECT, image="built").result()
    assert cloud.recorder.calls[-2:] == [("remove", f"gce-{PROJECT}-{ZONE}-second"), ("delete_image", snapshot)]


def test_an_auto_delete_disk_goes_with_its_instance(cloud: Cloud) -> None:
    instances, disks = cloud.instances(), cloud.disks()
    instances.insert(project=PROJECT, zone=ZONE, instance_resource=_instance("ephemeral", auto_delete=True)).result()
    address = instances.get(project=PROJECT, zone=ZONE, instance="ephemeral").network_interfaces[0].network_i_p
    instances.delete(project=PROJECT, zone=ZONE, instance="ephemeral").result()
    assert [d.name for d in disks.list(project=PROJECT, zone=ZONE)] == []
    assert cloud.recorder.calls[-1] == ("remove", f"gce-{PROJECT}-{ZONE}-ephemeral")
    assert cloud.recorder.allocate() == address  # released


def test_a_machine_that_does_not_boot_fails_the_insert(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(request: Boot) -> None:
        raise HypervisorError(f"{request.name}: no space left for its disk")

    monkeypatch.setattr(cloud.recorder, "boot", broken)
    with pytest.raises(exceptions.InternalServerError) as caught:
        cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=_instance("unlucky")).result()
    assert "no space left" in caught.value.errors[0].message
    assert cloud.gce.instances(PROJECT) == cloud.gce.disks(PROJECT) == []
    assert cloud.recorder.allocate() == "10.250.0.2"  # its address, the first, is free again


def test_a_disk_in_use_can_be_neither_deleted_nor_imaged(cloud: Cloud) -> None:
    cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=_instance("busy")).result()
    with pytest.raises(exceptions.BadRequest) as caught:
        cloud.disks().delete(project=PROJECT, zone=ZONE, disk="busy").result()
    assert _reason(caught.value) == "resourceInUseByAnotherResource"
    with pytest.raises(exceptions.BadRequest):
        cloud.images().insert(
            project=PROJECT,
            image_resource=compute_v1.Image(name="hot", source_disk=f"projects/{PROJECT}/zones/{ZONE}/disks/busy"),
        ).result()


def test_an_existing_instance_name_is_409(cloud: Cloud) -> None:
    cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=_instance("twice")).result()
    with pytest.raises(exceptions.Conflict):
        cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=_instance("twice")).result()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "Not_A_Name"}, "invalid"),
        ({"labels": {"Version": "1"}}, "invalid"),
        ({"labels": {"version": "1.0.0"}}, "invalid"),
        ({"machine_type": f"zones/{ZONE}/machineTypes/n9-huge"}, "invalid"),
    ],
)
def test_invalid_instances_are_400_with_a_reason(cloud: Cloud, change: dict[str, Any], reason: str) -> None:
    resource = _instance("valid-name")
    for field, value in change.items():
        setattr(resource, field, value)
    with pytest.raises(exceptions.BadRequest) as caught:
        cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=resource).result()
    assert _reason(caught.value) == reason


def test_missing_instances_and_disks_are_404(cloud: Cloud) -> None:
    with pytest.raises(exceptions.NotFound):
        cloud.instances().get(project=PROJECT, zone=ZONE, instance="nobody")
    with pytest.raises(exceptions.NotFound):
        cloud.instances().delete(project=PROJECT, zone=ZONE, instance="nobody").result()
    with pytest.raises(exceptions.NotFound):
        cloud.disks().delete(project=PROJECT, zone=ZONE, disk="nothing").result()


# Injected failures


def test_a_denied_permission_is_403(cloud: Cloud) -> None:
    source = f"projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
    cloud.gce.deny(PROJECT, "compute.images.create")
    with pytest.raises(exceptions.Forbidden, match=r"compute\.images\.create") as caught:
        cloud.images().insert(project=PROJECT, image_resource=_image_from(source, "denied")).result()
    assert _reason(caught.value) == "forbidden"
    cloud.images().get(project=DEBIAN, image=NEWEST_DEBIAN)  # other permissions and projects still work
    cloud.gce.allow(PROJECT, "compute.images.create")
    cloud.images().insert(project=PROJECT, image_resource=_image_from(source, "denied")).result()


def test_an_exhausted_quota_fails_the_operation(cloud: Cloud) -> None:
    cloud.gce.set_quota(PROJECT, "CPUS", 3)  # e2-small has 2
    cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=_instance("first")).result()
    with pytest.raises(exceptions.Forbidden) as caught:
        cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=_instance("second")).result()
    assert [e.code for e in caught.value.errors] == ["QUOTA_EXCEEDED"]
    assert [i.name for i in cloud.instances().list(project=PROJECT, zone=ZONE)] == ["first"]
    cloud.gce.set_quota(PROJECT, "CPUS", None)
    cloud.instances().insert(project=PROJECT, zone=ZONE, instance_resource=_instance("second")).result()


# Operations, state, metadata


def test_operations_are_done_at_once_and_can_be_polled_and_waited_for(cloud: Cloud) -> None:
    operation = cloud.instances().insert_unary(project=PROJECT, zone=ZONE, instance_resource=_instance("polled"))
    assert operation.status == compute_v1.Operation.Status.DONE
    zone_operations = compute_v1.ZoneOperationsClient(credentials=cloud.credentials)
    assert zone_operations.get(project=PROJECT, zone=ZONE, operation=operation.name).target_link.endswith("/polled")
    assert zone_operations.wait(project=PROJECT, zone=ZONE, operation=operation.name).progress == 100
    source = f"projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
    global_operation = cloud.images().insert_unary(project=PROJECT, image_resource=_image_from(source, "op-image"))
    global_operations = compute_v1.GlobalOperationsClient(credentials=cloud.credentials)
    assert global_operations.get(project=PROJECT, operation=global_operation.name).operation_type == "insert"
    with pytest.raises(exceptions.NotFound):
        global_operations.get(project=PROJECT, operation="operation-0-missing")


def test_the_state_can_be_read_from_another_process(cloud: Cloud) -> None:
    source = f"projects/{DEBIAN}/global/images/{NEWEST_DEBIAN}"
    cloud.images().insert(project=PROJECT, image_resource=_image_from(source, "seen", labels={"k": "v"})).result()
    reader = "import requests; print(requests.get('https://compute.googleapis.com/_fake/state', timeout=10).text)"
    result = subprocess.run(
        [sys.executable, "-c", reader], env=cloud.edge.env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert {"name": "seen", "labels": {"k": "v"}}.items() <= next(
        i for i in state["images"] if i["name"] == "seen"
    ).items()
    assert state["serviceAccounts"] == [f"packer@{PROJECT}.iam.gserviceaccount.com"]
    assert state == json.loads(json.dumps(cloud.gce.state()))


def test_the_metadata_server_names_the_default_account_only(cloud: Cloud) -> None:
    base = f"http://127.0.0.1:{cloud.edge.port}/computeMetadata/v1"
    flavour = {"Metadata-Flavor": "Google"}
    email = requests.get(f"{base}/instance/service-accounts/default/email", headers=flavour, timeout=5)
    assert (email.status_code, email.text) == (200, f"packer@{PROJECT}.iam.gserviceaccount.com")
    assert requests.get(f"{base}/instance/service-accounts/default/email", timeout=5).status_code == 403
    assert (
        requests.get(f"{base}/instance/service-accounts/default/token", headers=flavour, timeout=5).status_code == 404
    )


# Packer


TEMPLATE = """
source "googlecompute" "golden" {{
  project_id          = "{project}"
  account_file        = "{key}"
  zone                = "{zone}"
  source_image_family = "debian-12"
  image_name          = "golden-web-1"
  image_family        = "golden-web"
  image_labels        = {{ version = "1-0-0", managed-by = "operator" }}
  image_description   = "golden image"
  machine_type        = "e2-small"
  disk_size           = 20
  startup_script_file = "{startup}"
  state_timeout       = "20s"
  communicator        = "none"
}}

build {{
  sources = ["source.googlecompute.golden"]
}}
"""


def test_packer_builds_an_image_from_a_family_with_nothing_but_loopback(cloud: Cloud, tmp_path: Path) -> None:
    """With a startup script, so that Packer also waits for `startup-script-status` to be done."""
    packer = components.packer()
    try:
        isolated = cloud.edge.isolated(tmp_path / "netns.log")
    except (OSError, subprocess.CalledProcessError, RuntimeError, TimeoutError) as exc:
        components.missing("network namespaces", f"they need root and util-linux's unshare/nsenter: {exc}")
    procs.started([isolated.holder.pid])
    template = tmp_path / "gce.pkr.hcl"
    startup = tmp_path / "startup.sh"
    startup.write_text("#!/bin/sh\necho started\n")
    template.write_text(TEMPLATE.format(project=PROJECT, key=cloud.key_file, zone=ZONE, startup=startup))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "CHECKPOINT_DISABLE": "1",
        **cloud.edge.env(),
    }
    log = tmp_path / "packer.log"
    started = time.monotonic()
    build = processes.spawn(
        isolated.command([packer, "build", "-color=false", str(template)]), log=log, env=env, cwd=tmp_path
    )
    procs.started([build.pid])
    try:
        returncode = build.wait(timeout=180)
    finally:
        processes.stop(build, grace=5)
        isolated.stop()
    elapsed = time.monotonic() - started
    assert returncode == 0, log.read_text()[-4000:]
    assert "Startup script, if any, has finished running." in log.read_text()
    assert elapsed < 60, f"the build took {elapsed:.0f}s"

    image = cloud.gce.image(PROJECT, "golden-web-1")
    assert image is not None
    assert (image["status"], image["family"], image["description"]) == ("READY", "golden-web", "golden image")
    assert image["labels"] == {"version": "1-0-0", "managed-by": "operator"}
    assert cloud.gce.instances(PROJECT) == []
    assert cloud.gce.disks(PROJECT) == []
    [machine] = {name for _, name in cloud.recorder.calls}
    assert cloud.recorder.calls == _lifecycle(machine)
    assert cloud.gce.machine_image(PROJECT, "golden-web-1") in cloud.recorder.images
    assert cloud.requests_to("/token") == 1  # Packer's JWT-bearer grant
    assert not procs.alive(build.pid)
    assert not procs.alive(isolated.holder.pid)
