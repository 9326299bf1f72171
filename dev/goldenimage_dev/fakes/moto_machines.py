"""moto whose EC2 instances are real machines: the hooks, the in-process server, and a command
with the CLI of `python -m moto.server` (-H, -p) plus the machines' directory and the AMIs to seed.

`install(hypervisor)` hooks moto's EC2 and SSM backends in this process, synchronously, so that
nothing can race the API: RunInstances boots a machine at the instance's private address and
returns once sshd answers; StopInstances powers it off before the instance reads `stopped`;
StartInstances boots its disk again; CreateImage snapshots the powered-off machine before it
returns, and the AMI stands for that image (CopyImage's copies too); TerminateInstances removes
the machine; DeregisterImage deletes the image once no AMI stands for it. SSM's
AWS-RunShellScript runs for real inside the machine as root: GetCommandInvocation says
InProgress until it ends, then its exit code and output.

Private addresses come from `Hypervisor.allocate()` for every subnet, the default VPC's ones
included (Packer's launches without a subnet), so they are unique across regions and across
every fake sharing the hypervisor, and they are the machines' addresses in the lab: Packer's
`ssh_interface = "private_ip"` reaches them unchanged.

Seeded AMIs boot the base image with their `login_user` (default ec2-user), or the cloud-init
variant with `"cloud_init": true`; an AMI made by CreateImage boots with the user of the
instance it was made from; any other AMI boots the base image with the default user.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .hypervisor import Boot, Hypervisor, HypervisorError

log = logging.getLogger("goldenimage_dev.fakes.moto_machines")

DEFAULT_USER = "ec2-user"
_OUTPUT_LIMIT = 24000  # what SSM returns of a command's output inline


@runtime_checkable
class Commands(Protocol):
    """A hypervisor that can run a program in a running machine (for SSM)."""

    def command(self, name: str, argv: list[str], *, timeout: float = ...) -> tuple[int, str]: ...


@dataclass(frozen=True)
class _Image:
    image: str | None  # the hypervisor's image; None: the base image
    user: str
    cloud_init: bool = False


@dataclass
class Hooks:
    """What the hooks remember: AMIs -> machine images, instances -> machines."""

    hypervisor: Hypervisor
    default_user: str = DEFAULT_USER
    seeds: dict[str, _Image] = field(default_factory=dict)
    amis: dict[str, _Image] = field(default_factory=dict)  # AMIs made from machines (and copies)
    machines: dict[str, str] = field(default_factory=dict)  # instance id -> machine name
    booted_from: dict[str, _Image] = field(default_factory=dict)  # instance id -> what it booted
    addresses: set[str] = field(default_factory=set)  # allocated by us and not yet released
    instance_address: dict[str, str] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    originals: list[tuple[object, str, Any]] = field(default_factory=list)

    def source(self, ami: str) -> _Image:
        with self.lock:
            return self.amis.get(ami) or self.seeds.get(ami) or _Image(None, self.default_user)

    def allocate(self) -> str:
        address = self.hypervisor.allocate()
        with self.lock:
            self.addresses.add(address)
        return address

    def release(self, address: str | None) -> None:
        with self.lock:
            if address not in self.addresses:
                return
            self.addresses.discard(address)
        self.hypervisor.release(address)


_hooks: Hooks | None = None


def installed() -> Hooks | None:
    return _hooks


def install(
    hypervisor: Hypervisor, *, amis: Sequence[Mapping[str, Any]] | None = None, default_user: str = DEFAULT_USER
) -> Hooks:
    """Hook moto (in this process) to drive `hypervisor`; `amis` replaces moto's seeded AMIs
    (entries as in MOTO_AMIS_PATH, plus optional `login_user` and `cloud_init`)."""
    from moto.ec2.models import EC2Backend
    from moto.ec2.models import amis as moto_amis
    from moto.ec2.models import instances as moto_instances
    from moto.ec2.models.subnets import Subnet
    from moto.ssm.models import SimpleSystemManagerBackend

    global _hooks
    uninstall()
    hooks = Hooks(hypervisor, default_user=default_user)
    if amis is not None:
        moto_amis.AMIS[:] = [{k: v for k, v in a.items() if k not in ("login_user", "cloud_init")} for a in amis]
        for ami in amis:
            hooks.seeds[str(ami["ami_id"])] = _Image(
                None, str(ami.get("login_user") or default_user), bool(ami.get("cloud_init"))
            )

    def patch(owner: object, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        hooks.originals.append((owner, name, original))
        setattr(owner, name, make(original))

    patch(
        Subnet, "get_available_subnet_ip", lambda original: lambda subnet, instance: _allocate(hooks, subnet, instance)
    )
    # An instance launched without a subnet (the default VPC, as Packer does) gets its address here.
    patch(moto_instances, "random_private_ip", lambda original: _default_vpc_address(hooks, original))
    patch(EC2Backend, "run_instances", lambda original: _run_instances(hooks, original))
    patch(EC2Backend, "stop_instances", lambda original: _stop_instances(hooks, original))
    patch(EC2Backend, "start_instances", lambda original: _start_instances(hooks, original))
    patch(EC2Backend, "terminate_instances", lambda original: _terminate_instances(hooks, original))
    patch(EC2Backend, "create_image", lambda original: _create_image(hooks, original))
    patch(EC2Backend, "copy_image", lambda original: _copy_image(hooks, original))
    patch(EC2Backend, "deregister_image", lambda original: _deregister_image(hooks, original))
    if isinstance(hypervisor, Commands):
        patch(SimpleSystemManagerBackend, "send_command", lambda original: _send_command(hooks, original))
    _hooks = hooks
    return hooks


def uninstall() -> None:
    """Undo `install` (the machines it booted stay: close the hypervisor for that)."""
    global _hooks
    if _hooks is not None:
        for owner, name, original in reversed(_hooks.originals):
            setattr(owner, name, original)
        _hooks = None


# -- EC2 -----------------------------------------------------------------------------------


def _machine_name(backend: Any, instance_id: str) -> str:
    return f"ec2-{backend.region_name}-{instance_id}"


def _allocate(hooks: Hooks, subnet: Any, instance: Any) -> str:
    address = hooks.allocate()
    subnet._subnet_ips[address] = instance  # moto's own bookkeeping of the subnet's addresses
    return address


def _default_vpc_address(hooks: Hooks, original: Callable[..., str]) -> Callable[..., str]:
    def random_private_ip(*args: Any, **kwargs: Any) -> str:
        return hooks.allocate() if not args and not kwargs else original(*args, **kwargs)

    return random_private_ip


def _error(code: str, message: str) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


def _boot(hooks: Hooks, backend: Any, instance: Any, source: _Image, keys: tuple[str, ...]) -> None:
    name = _machine_name(backend, instance.id)
    with hooks.lock:
        hooks.machines[instance.id] = name
        hooks.booted_from[instance.id] = source
        hooks.instance_address[instance.id] = instance.private_ip
    hooks.hypervisor.boot(
        Boot(
            name=name,
            address=instance.private_ip,
            image=source.image,
            user=source.user,
            public_keys=keys,
            cloud_init=source.cloud_init,
        )
    )


def _public_keys(backend: Any, key_name: str | None) -> tuple[str, ...]:
    if not key_name or key_name not in backend.key_pairs:
        return ()
    return (backend.key_pairs[key_name].public_key.strip(),)


def _run_instances(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def run_instances(backend: Any, image_id: str, count: int, *args: Any, **kwargs: Any) -> Any:
        reservation = original(backend, image_id, count, *args, **kwargs)
        source = hooks.source(image_id)
        keys = _public_keys(backend, kwargs.get("key_name"))
        try:
            for instance in reservation.instances:
                _boot(hooks, backend, instance, source, keys)
        except HypervisorError as exc:
            ids = [i.id for i in reservation.instances]
            _terminate(hooks, backend, ids)
            original_terminate = _original(hooks, "terminate_instances")
            original_terminate(backend, ids)
            raise _error("InsufficientInstanceCapacity", f"the machine did not boot: {exc}") from exc
        return reservation

    return run_instances


def _original(hooks: Hooks, name: str) -> Any:
    return next(orig for owner, n, orig in hooks.originals if n == name)


def _stop_instances(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def stop_instances(backend: Any, instance_ids: list[str]) -> Any:
        for instance_id in instance_ids:
            name = hooks.machines.get(instance_id)
            if name is not None:
                hooks.hypervisor.power_off(name)
        return original(backend, instance_ids)

    return stop_instances


def _start_instances(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def start_instances(backend: Any, instance_ids: list[str]) -> Any:
        started = original(backend, instance_ids)
        for instance, previous in started:
            if previous.name == "stopped" and instance.id in hooks.booted_from:
                keys = _public_keys(backend, instance.key_name)
                _boot(hooks, backend, instance, hooks.booted_from[instance.id], keys)
        return started

    return start_instances


def _terminate(hooks: Hooks, backend: Any, instance_ids: list[str]) -> None:
    for instance_id in instance_ids:
        with hooks.lock:
            name = hooks.machines.pop(instance_id, None)
            hooks.booted_from.pop(instance_id, None)
            address = hooks.instance_address.pop(instance_id, None)
        if name is not None:
            hooks.hypervisor.remove(name)
        hooks.release(address)


def _terminate_instances(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def terminate_instances(backend: Any, instance_ids: list[str]) -> Any:
        terminated = original(backend, instance_ids)
        _terminate(hooks, backend, [instance.id for instance, _ in terminated])
        return terminated

    return terminate_instances


def _create_image(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def create_image(backend: Any, instance_id: str, *args: Any, **kwargs: Any) -> Any:
        name = hooks.machines.get(instance_id)
        image = None
        if name is not None:
            instance = backend.get_instance(instance_id)
            running = instance.state == "running"
            if running:  # what AWS does without NoReboot: stop, capture, start again
                hooks.hypervisor.power_off(name)
            image = hooks.hypervisor.snapshot(name)
            if running:
                keys = _public_keys(backend, instance.key_name)
                _boot(hooks, backend, instance, hooks.booted_from[instance_id], keys)
        ami = original(backend, instance_id, *args, **kwargs)
        if image is not None:
            booted = hooks.booted_from[instance_id]
            with hooks.lock:
                hooks.amis[ami.id] = _Image(image, booted.user, booted.cloud_init)
        return ami

    return create_image


def _copy_image(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def copy_image(backend: Any, source_image_id: str, *args: Any, **kwargs: Any) -> Any:
        ami = original(backend, source_image_id, *args, **kwargs)
        with hooks.lock:
            if source_image_id in hooks.amis:
                hooks.amis[ami.id] = hooks.amis[source_image_id]
            elif source_image_id in hooks.seeds:
                hooks.amis[ami.id] = hooks.seeds[source_image_id]
        return ami

    return copy_image


def _deregister_image(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def deregister_image(backend: Any, ami_id: str) -> Any:
        result = original(backend, ami_id)
        with hooks.lock:
            gone = hooks.amis.pop(ami_id, None)
            still_used = gone is not None and any(i.image == gone.image for i in hooks.amis.values())
        if gone is not None and gone.image is not None and not still_used:
            hooks.hypervisor.delete_image(gone.image)
        return result

    return deregister_image


# -- SSM -----------------------------------------------------------------------------------


def _send_command(hooks: Hooks, original: Callable[..., Any]) -> Callable[..., Any]:
    def send_command(backend: Any, **kwargs: Any) -> Any:
        command = original(backend, **kwargs)
        if command.document_name != "AWS-RunShellScript":
            return command
        parameters = command.parameters or {}
        script = "\n".join(parameters.get("commands", []))
        timeout = float((parameters.get("executionTimeout") or [3600])[0])
        command.status = command.status_details = "InProgress"
        command.completed_count = 0
        for invocation in command.invocations:
            invocation.update(Status="InProgress", StatusDetails="InProgress", ResponseCode=-1)
            invocation.pop("ExecutionEndDateTime", None)
        for invocation in list(command.invocations):
            name = hooks.machines.get(invocation["InstanceId"])
            threading.Thread(
                target=_execute,
                args=(hooks, command, invocation, name, script, timeout),
                daemon=True,
                name=f"ssm-{command.command_id}-{invocation['InstanceId']}",
            ).start()
        return command

    return send_command


def _execute(hooks: Hooks, command: Any, invocation: dict[str, Any], name: str | None, script: str, t: float) -> None:
    runner = hooks.hypervisor
    assert isinstance(runner, Commands)
    try:
        if name is None:
            raise HypervisorError(f"instance {invocation['InstanceId']} is no machine")
        code, output = runner.command(name, ["/bin/sh", "-c", script], timeout=t)
        status = "Success" if code == 0 else "Failed"
    except HypervisorError as exc:  # not running, gone or timed out: SSM cannot deliver
        code, output, status = -1, str(exc), "Failed"
    with hooks.lock:
        invocation.update(
            Status=status,
            StatusDetails=status,
            ResponseCode=code,
            StandardOutputContent=output[-_OUTPUT_LIMIT:],
            ExecutionEndDateTime=datetime.now(UTC).isoformat(),
        )
        pending = [i for i in command.invocations if i["Status"] == "InProgress"]
        command.completed_count = len(command.invocations) - len(pending)
        command.error_count = sum(1 for i in command.invocations if i["Status"] == "Failed")
        if not pending:
            command.status = command.status_details = "Failed" if command.error_count else "Success"


# -- serving -------------------------------------------------------------------------------


def app() -> Any:
    """moto's WSGI application (every service, dispatched by host and headers)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(create_backend_app)


@dataclass
class Server:
    """moto served from a thread of this process."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def serve(host: str = "127.0.0.1", port: int = 0) -> Server:
    """Serve moto (hooked or not) on `host:port` (0: a free port) from a thread."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server(host, port, app(), threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="moto")
    thread.start()
    return Server(host, server.server_address[1], server, thread)


@contextlib.contextmanager
def _amis_file(amis: list[dict[str, Any]]) -> Iterator[Path]:
    """moto seeds only these AMIs (not its own catalogue) when MOTO_AMIS_PATH names a file."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="moto-amis-") as out:
        json.dump([{k: v for k, v in a.items() if k not in ("login_user", "cloud_init")} for a in amis], out)
        out.flush()
        yield Path(out.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m goldenimage_dev.fakes.moto_machines",
        description="moto on real machines (run it inside the lab)",
    )
    parser.add_argument("-H", "--host", default="127.0.0.1", help="which host to bind")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    parser.add_argument("--machines", required=True, type=Path, help="where machine disks and images live")
    parser.add_argument(
        "--amis",
        type=Path,
        help="JSON list of AMIs to seed (moto's fields, plus login_user and cloud_init); "
        "default: the RHEL 9 AMIs the examples select",
    )
    parser.add_argument("--default-user", default=DEFAULT_USER, help="login user of AMIs that name none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from goldenimage_dev.machines import images
    from goldenimage_dev.machines.hypervisor import Machines

    if args.amis:
        amis: list[dict[str, Any]] = json.loads(args.amis.read_text())
    else:
        from goldenimage_dev.aws import SEED_AMIS

        amis = [dict(a) for a in SEED_AMIS]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _amis_file(amis) as path:
        os.environ["MOTO_AMIS_PATH"] = str(path)
        machines = Machines(args.machines)
        try:
            # Built (or found in the cache) before listening, so that no RunInstances waits a minute.
            for variant in sorted({"cloud-init" if a.get("cloud_init") else "base" for a in amis} | {"base"}):
                images.ensure(variant, apt_proxy=machines.lab.apt_proxy)
            install(machines, amis=amis, default_user=args.default_user)
            server = serve(args.host, args.port)
            print(f"moto on machines: {server.endpoint}", flush=True)
            stop.wait()
            server.stop()
        finally:
            uninstall()
            machines.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
