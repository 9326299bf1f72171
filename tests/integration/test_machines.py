"""Machines that really boot (goldenimage_dev.machines): systemd as PID 1, SSH with the seeded
key, apt through the lab's gateway, images as snapshots that chain, clean power-off, and nothing
left on the host after removal, also when the run that booted them was killed.

Run inside the lab: python -m goldenimage_dev.machines lab -- python -m pytest <this file>.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldenimage_dev.fakes.hypervisor import Boot
from goldenimage_dev.machines import leftovers
from goldenimage_dev.machines.hypervisor import Machines
from goldenimage_dev.machines.lab import Lab
from support import lab as labs
from support import polling, procs

pytestmark = pytest.mark.integration

USER = "ec2-user"
HELLO = re.compile(r"/hello_[^ /]+\.deb\b")


@pytest.fixture(scope="module")
def lab() -> Lab:
    return labs.require()


@pytest.fixture(scope="module")
def machines(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machines]:
    hypervisor = Machines(tmp_path_factory.mktemp("machines"))
    try:
        yield hypervisor
    finally:
        hypervisor.close()
    assert not hypervisor.cgroup.exists(), "the machines' cgroup outlived close()"


@pytest.fixture(scope="module")
def key() -> labs.Key:
    return labs.new_key()


class Booted:
    """Boots machines for one test and removes them afterwards, also when the test fails."""

    def __init__(self, machines: Machines, key: labs.Key) -> None:
        self.machines = machines
        self.key = key
        self.names: list[str] = []

    def __call__(self, name: str, image: str | None = None, *, cloud_init: bool = False) -> Boot:
        request = Boot(
            name=name,
            address=self.machines.allocate(),
            image=image,
            user=USER,
            public_keys=(self.key.public,),
            hostname=name,
            cloud_init=cloud_init,
        )
        self.names.append(name)
        self.machines.boot(request)
        return request

    def run(self, name: str, script: str) -> str:
        code, output = self.machines.command(name, ["/bin/sh", "-c", script])
        assert code == 0, f"{script!r} in {name} exited with {code}:\n{output}"
        return output

    def cleanup(self) -> None:
        for name in self.names:
            self.machines.remove(name)
        for name in self.names:
            with pytest.raises(Exception, match="no machine"):
                self.machines.address(name)


@pytest.fixture
def boot(machines: Machines, key: labs.Key) -> Iterator[Booted]:
    booted = Booted(machines, key)
    try:
        yield booted
    finally:
        booted.cleanup()


def test_a_machine_boots_systemd_and_answers_ssh_with_the_seeded_key(boot: Booted, key: labs.Key) -> None:
    request = boot("boot-1")
    assert boot.run("boot-1", "systemctl is-system-running --wait").strip() == "running"
    assert boot.run("boot-1", "systemctl is-active ssh").strip() == "active"
    assert boot.run("boot-1", "cat /proc/1/comm").strip() == "systemd"
    code, output = labs.ssh(request.address, USER, key, "hostname; id -un; sudo -n id -u")
    assert (code, output.split()) == (0, ["boot-1", USER, "0"])
    # A first boot: a machine-id of its own and host keys made for it.
    assert len(boot.run("boot-1", "cat /etc/machine-id").strip()) == 32
    assert "ssh_host_ed25519_key" in boot.run("boot-1", "ls /etc/ssh")


def test_a_stranger_key_is_refused(boot: Booted) -> None:
    request = boot("stranger-1")
    with pytest.raises(asyncssh_errors()):
        labs.ssh(request.address, USER, labs.new_key(), "true")


def asyncssh_errors() -> tuple[type[BaseException], ...]:
    import asyncssh

    return (asyncssh.PermissionDenied, asyncssh.DisconnectError)


def test_the_cloud_init_variant_takes_its_user_from_the_nocloud_seed(boot: Booted, key: labs.Key) -> None:
    request = boot("cloud-1", cloud_init=True)
    assert boot.run("cloud-1", "systemctl is-system-running --wait").strip() == "running"
    assert "status: done" in boot.run("cloud-1", "cloud-init status --wait")
    code, output = labs.ssh(request.address, USER, key, "hostname; sudo -n id -u")
    assert (code, output.split()) == (0, ["cloud-1", "0"])


def test_apt_installs_through_the_gateway_and_the_second_install_comes_from_its_cache(boot: Booted, lab: Lab) -> None:
    boot("apt-1")
    boot.run("apt-1", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello")
    assert boot.run("apt-1", "hello").strip() == "Hello, world!"
    fetched = [line for line in labs.journal(lab) if HELLO.search(line)]
    assert fetched, labs.journal(lab)[-20:]
    # Again, with apt's own cache emptied: the gateway serves the package from its cache.
    boot.run("apt-1", "apt-get remove -y -q hello && apt-get clean && apt-get install -y -q hello && hello")
    again = [line for line in labs.journal(lab) if HELLO.search(line)]
    assert len(again) == len(fetched) + 1
    assert again[-1].startswith("HIT "), again


def test_the_gateway_refuses_hosts_that_are_not_the_debian_mirror(boot: Booted, lab: Lab) -> None:
    boot("refused-1")
    script = f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 -x {lab.apt_proxy} http://example.org/"
    assert boot.run("refused-1", script) == "403"
    assert "REFUSED GET example.org" in labs.journal(lab)
    # Not through the gateway, nothing leaves the lab at all.
    code, _ = boot.machines.command("refused-1", ["curl", "-sS", "--max-time", "3", "http://deb.debian.org/"])
    assert code != 0


def test_an_image_is_a_snapshot_and_images_chain(boot: Booted, machines: Machines) -> None:
    boot("layer-1")
    boot.run("layer-1", "echo one > /etc/layer-one && echo doomed > /etc/doomed")
    machines.power_off("layer-1")
    first = machines.snapshot("layer-1")
    assert machines.image_file(first, "/etc/layer-one") == b"one\n"

    boot("layer-2", first)
    assert boot.run("layer-2", "cat /etc/layer-one") == "one\n"
    boot.run("layer-2", "echo two > /etc/layer-two && rm /etc/doomed /etc/motd")
    machines.power_off("layer-2")
    second = machines.snapshot("layer-2")
    assert machines.image_file(second, "/etc/layer-two") == b"two\n"
    for gone in ("/etc/doomed", "/etc/motd"):
        with pytest.raises(FileNotFoundError):
            machines.image_file(second, gone)
    assert machines.image_file(None, "/etc/motd")  # the base image keeps it

    # Images built on a deleted image keep working.
    machines.delete_image(first)
    assert first not in machines.images()
    boot("layer-3", second)
    assert boot.run("layer-3", "cat /etc/layer-one /etc/layer-two") == "one\ntwo\n"
    assert boot.run("layer-3", "test ! -e /etc/doomed && test ! -e /etc/motd && echo gone") == "gone\n"
    machines.delete_image(second)
    boot.cleanup()
    boot.names.clear()
    assert not (machines.directory / "images" / first).exists()
    assert not (machines.directory / "images" / second).exists()


def test_power_off_is_clean(boot: Booted, machines: Machines) -> None:
    boot("off-1")
    unit = textwrap.dedent(
        """\
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/true
        ExecStop=/bin/sh -c 'echo stopped > /var/lib/stopped-cleanly'
        """
    )
    install = 'printf "%s" "$1" > /etc/systemd/system/marker.service && systemctl start marker'
    assert machines.command("off-1", ["/bin/sh", "-c", install, "sh", unit]) == (0, "")
    machines.power_off("off-1")  # raises unless systemd powered the machine off
    assert not machines.running("off-1")
    image = machines.snapshot("off-1")
    assert machines.image_file(image, "/var/lib/stopped-cleanly") == b"stopped\n"
    machines.delete_image(image)


def test_remove_leaves_no_process_mount_cgroup_or_veth(boot: Booted, machines: Machines) -> None:
    boot("gone-1")
    footprint = machines.footprint("gone-1")
    assert footprint.remaining(), "the footprint should see the running machine"
    machines.remove("gone-1")
    assert footprint.remaining() == []
    assert not footprint.disk.exists()


def test_addresses_are_unique_across_hypervisors_in_the_lab(machines: Machines, tmp_path: Path, lab: Lab) -> None:
    other = Machines(tmp_path / "other")
    try:
        mine = {machines.allocate() for _ in range(3)}
        theirs = {other.allocate() for _ in range(3)}
        assert len(mine) == 3 and len(theirs) == 3 and not mine & theirs
        assert all(ip != lab.gateway and ipaddress.ip_address(ip) in lab.network for ip in mine | theirs)
        for address in mine:
            machines.release(address)
        assert mine & {other.allocate() for _ in range(3)} == mine
    finally:
        other.close()


KILLED_RUN = """
import json
import sys
from pathlib import Path
from goldenimage_dev.fakes.hypervisor import Boot
from goldenimage_dev.machines.hypervisor import Machines

machines = Machines(Path(sys.argv[1]))
machines.boot(Boot(name="orphan-1", address=machines.allocate(), image=None, user="ec2-user"))
f = machines.footprint("orphan-1")
print(json.dumps([str(f.cgroup), f.veth, str(f.disk), f.namespaces]), flush=True)
sys.stdin.read()
"""


def test_a_killed_runs_machines_are_swept_by_the_next(tmp_path: Path, lab: Lab) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.started([run.pid])
    try:
        assert run.stdout is not None
        line = run.stdout.readline()
        assert line, f"the run did not boot its machine (exit {run.poll()})"
        cgroup, veth, disk, namespaces = json.loads(line)
        footprint = leftovers.Footprint(Path(cgroup), veth, Path(disk), tuple((k, i) for k, i in namespaces))
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        assert footprint.remaining(), "the killed run's machine should be orphaned, still running"
        # The next run (any new Machines) sweeps what dead owners left.
        Machines(tmp_path / "next").close()
        polling.until(lambda: footprint.remaining() == [], timeout=20, what="the orphan to be swept")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=10)
        if run.stdin is not None:
            run.stdin.close()
        if run.stdout is not None:
            run.stdout.close()
        leftovers.sweep()


def test_the_tests_run_in_the_labs_namespace_which_has_no_way_out(lab: Lab) -> None:
    assert Path("/proc/self/ns/net").stat().st_ino == lab.netns
    routes = subprocess.run(["ip", "-o", "route"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert [r.split()[:3] for r in routes] == [[str(lab.network), "dev", lab.bridge]]


def test_the_lab_command_passes_the_exit_code_on_and_leaves_nothing(lab: Lab) -> None:
    """A lab inside this one: CMD's exit code comes back, and what CMD left running is stopped."""
    script = 'sleep 600 & echo "$! $GOLDENIMAGE_LAB_DIR $GOLDENIMAGE_LAB_APT_PROXY"; exit 7'
    done = subprocess.run(
        [sys.executable, "-m", "goldenimage_dev.machines", "lab", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 7, done.stderr
    pid, directory, proxy = done.stdout.split()
    assert proxy == "http://10.250.0.1:3142"
    assert not procs.alive(int(pid)), "the lab left CMD's child running"
    assert not Path(directory).exists()
