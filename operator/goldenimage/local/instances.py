"""Stands in for booted instances on moto, where nothing boots: every running instance whose
private address is on 127.0.0.0/8 (a moto subnet in that range) gets listeners on that address
for the TCP ports and HTTP paths it should serve, until it is terminated. Validation checks then
connect for real and never leave the loopback network."""

from __future__ import annotations

import contextlib
import http.server
import logging
import socketserver
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .aws import moto_aws

log = logging.getLogger("goldenimage.local.instances")


@dataclass(frozen=True)
class Services:
    """What each instance serves: plain TCP ports, and HTTP ports with path -> body (200)."""

    tcp: tuple[int, ...] = ()
    http: Mapping[int, Mapping[str, str]] = field(default_factory=dict)


class _Quiet(http.server.BaseHTTPRequestHandler):
    paths: Mapping[str, str] = {}

    def do_GET(self) -> None:
        body = self.paths.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write((body if body is not None else "not found\n").encode())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


class _Accept(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        """Accept and close: enough for a TCP check."""


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _HTTPServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class InstanceAgent:
    def __init__(self, endpoint: str, regions: Sequence[str], services: Services, interval: float = 0.2) -> None:
        self.endpoint = endpoint
        self.regions = list(regions)
        self.services = services
        self.interval = interval
        self.servers: dict[str, list[socketserver.BaseServer]] = {}  # instance id -> servers
        self.served: list[str] = []  # addresses that have been served, for tests and the demo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="instance-agent")
        self._aws = moto_aws(endpoint)

    def start(self) -> InstanceAgent:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for instance in list(self.servers):
            self._close(instance)

    def __enter__(self) -> InstanceAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        last_error = ""
        while not self._stop.is_set():
            try:
                self._sync()
                last_error = ""
            except Exception as exc:  # moto restarting or slow: try again, saying so once
                if str(exc) != last_error:
                    log.warning("instance agent: %s (retrying)", exc)
                last_error = str(exc)
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        running: dict[str, str] = {}
        for region in self.regions:
            pages = self._aws.ec2(region).describe_instances(
                Filters=[{"Name": "instance-state-name", "Values": ["running"]}]
            )
            for reservation in pages["Reservations"]:
                for instance in reservation["Instances"]:
                    address = instance.get("PrivateIpAddress", "")
                    if address.startswith("127."):
                        running[instance["InstanceId"]] = address
        for instance in set(self.servers) - set(running):
            self._close(instance)
        for instance, address in running.items():
            if instance not in self.servers:
                self.servers[instance] = self._open(address)

    def _open(self, address: str) -> list[socketserver.BaseServer]:
        servers: list[socketserver.BaseServer] = []
        for port in [*self.services.tcp, *self.services.http]:
            try:
                if port in self.services.http:
                    handler = type("Handler", (_Quiet,), {"paths": dict(self.services.http[port])})
                    server: socketserver.BaseServer = _HTTPServer((address, port), handler)
                else:
                    server = _TCPServer((address, port), _Accept)
            except OSError as exc:
                log.warning("instance agent: cannot listen on %s:%d: %s", address, port, exc)
                continue
            threading.Thread(target=server.serve_forever, daemon=True, name=f"serve-{address}:{port}").start()
            servers.append(server)
        self.served.append(address)
        return servers

    def _close(self, instance: str) -> None:
        for server in self.servers.pop(instance, []):
            server.shutdown()
            server.server_close()


def prepare_validation(
    endpoint: str, cidrs: Mapping[str, str], tags: Mapping[str, str], instance_profile: str | None = None
) -> dict[str, str]:
    """What `validation.aws` selects, in moto: per region a VPC in 127.0.0.0/16 with a subnet
    (distinct CIDRs, so that addresses never collide across regions) and a security group, both
    tagged `tags`; and the instance profile command checks use. Returns the subnet by region."""

    aws = moto_aws(endpoint)
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    out = {}
    for region, cidr in cidrs.items():
        ec2 = aws.ec2(region)
        vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(
            VpcId=vpc, CidrBlock=cidr, TagSpecifications=[{"ResourceType": "subnet", "Tags": tag_list}]
        )["Subnet"]["SubnetId"]
        ec2.create_security_group(
            GroupName="image-validation",
            Description="validation instances",
            VpcId=vpc,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list}],
        )
        out[region] = subnet
    if instance_profile:
        iam = aws.client("iam", "us-east-1")
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_instance_profile(InstanceProfileName=instance_profile)
    return out
