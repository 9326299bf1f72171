"""The HTTP face of the fake: Compute Engine's REST paths, the OAuth token endpoint, the
metadata server's few answers, and `GET /_fake/state` for tests in other processes.

Every Compute Engine request is authenticated (401), its project must exist (404), the
permission it needs must not be denied (403), and then the state answers or raises an ApiError,
which goes out in Compute Engine's error shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.types import StartResponse, WSGIEnvironment

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .errors import ApiError, invalid, method_not_found
from .tokens import OAuthError, Principal

if TYPE_CHECKING:
    from .state import ComputeEngine, Doc

API_HOSTS = ("compute.googleapis.com", "www.googleapis.com")
TOKEN_HOST = "oauth2.googleapis.com"
METADATA_HOST = "metadata.google.internal"
_PREFIX = "/compute/v1/projects/<project>"


@dataclass(frozen=True)
class Call:
    """One authenticated API request, as a handler sees it."""

    fake: ComputeEngine
    request: Request
    args: Mapping[str, str]
    principal: Principal

    def __getitem__(self, name: str) -> str:
        return self.args[name]

    @property
    def project(self) -> str:
        return self.args["project"]

    @property
    def user(self) -> str:
        return self.principal.email

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.args

    @property
    def body(self) -> Doc:
        data = self.request.get_data()
        if not data.strip():
            return {}
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise invalid(f"Invalid JSON payload received. {exc}", "parseError") from exc
        if not isinstance(body, dict):
            raise invalid("Invalid JSON payload received. Expected an object.", "parseError")
        return body


Handler = Callable[[Call], "Doc"]

# method, path below /compute/v1/projects/PROJECT, the permission it needs, what it does
ROUTES: list[tuple[str, str, str, Handler]] = [
    ("GET", "", "compute.projects.get", lambda c: c.fake.get_project(c.project)),
    ("GET", "/zones", "compute.zones.list", lambda c: c.fake.list_zones(c.project, c.query)),
    ("GET", "/zones/<zone>", "compute.zones.get", lambda c: c.fake.get_zone(c.project, c["zone"])),
    ("GET", "/regions", "compute.regions.list", lambda c: c.fake.list_regions(c.project, c.query)),
    ("GET", "/regions/<region>", "compute.regions.get", lambda c: c.fake.get_region(c.project, c["region"])),
    (
        "GET",
        "/zones/<zone>/machineTypes",
        "compute.machineTypes.list",
        lambda c: c.fake.list_machine_types(c.project, c["zone"], c.query),
    ),
    (
        "GET",
        "/zones/<zone>/machineTypes/<name>",
        "compute.machineTypes.get",
        lambda c: c.fake.machine_type(c.project, c["zone"], c["name"]),
    ),
    # Images
    ("GET", "/global/images", "compute.images.list", lambda c: c.fake.list_images(c.project, c.query)),
    (
        "POST",
        "/global/images",
        "compute.images.create",
        lambda c: c.fake.insert_image(c.project, c.body, c.user, c.query),
    ),
    ("GET", "/global/images/<image>", "compute.images.get", lambda c: c.fake.get_image(c.project, c["image"])),
    (
        "DELETE",
        "/global/images/<image>",
        "compute.images.delete",
        lambda c: c.fake.delete_image(c.project, c["image"], c.user, c.query),
    ),
    (
        "GET",
        "/global/images/family/<family>",
        "compute.images.getFromFamily",
        lambda c: c.fake.image_from_family(c.project, c["family"]),
    ),
    (
        "POST",
        "/global/images/<image>/setLabels",
        "compute.images.setLabels",
        lambda c: c.fake.set_image_labels(c.project, c["image"], c.body, c.user, c.query),
    ),
    (
        "POST",
        "/global/images/<image>/deprecate",
        "compute.images.deprecate",
        lambda c: c.fake.deprecate_image(c.project, c["image"], c.body, c.user, c.query),
    ),
    # Instances
    (
        "GET",
        "/zones/<zone>/instances",
        "compute.instances.list",
        lambda c: c.fake.list_instances(c.project, c["zone"], c.query),
    ),
    (
        "POST",
        "/zones/<zone>/instances",
        "compute.instances.create",
        lambda c: c.fake.insert_instance(c.project, c["zone"], c.body, c.user, c.query),
    ),
    (
        "GET",
        "/zones/<zone>/instances/<name>",
        "compute.instances.get",
        lambda c: c.fake.get_instance(c.project, c["zone"], c["name"]),
    ),
    (
        "DELETE",
        "/zones/<zone>/instances/<name>",
        "compute.instances.delete",
        lambda c: c.fake.delete_instance(c.project, c["zone"], c["name"], c.user, c.query),
    ),
    (
        "GET",
        "/zones/<zone>/instances/<name>/serialPort",
        "compute.instances.getSerialPortOutput",
        lambda c: c.fake.serial_port(c.project, c["zone"], c["name"]),
    ),
    (
        "POST",
        "/zones/<zone>/instances/<name>/setMetadata",
        "compute.instances.setMetadata",
        lambda c: c.fake.set_instance_metadata(c.project, c["zone"], c["name"], c.body, c.user, c.query),
    ),
    (
        "POST",
        "/zones/<zone>/instances/<name>/setLabels",
        "compute.instances.setLabels",
        lambda c: c.fake.set_instance_labels(c.project, c["zone"], c["name"], c.body, c.user, c.query),
    ),
    (
        "GET",
        "/aggregated/instances",
        "compute.instances.list",
        lambda c: c.fake.aggregated(c.project, "instances", c.query),
    ),
    # Disks
    ("GET", "/zones/<zone>/disks", "compute.disks.list", lambda c: c.fake.list_disks(c.project, c["zone"], c.query)),
    (
        "GET",
        "/zones/<zone>/disks/<name>",
        "compute.disks.get",
        lambda c: c.fake.get_disk(c.project, c["zone"], c["name"]),
    ),
    (
        "DELETE",
        "/zones/<zone>/disks/<name>",
        "compute.disks.delete",
        lambda c: c.fake.delete_disk(c.project, c["zone"], c["name"], c.user, c.query),
    ),
    ("GET", "/aggregated/disks", "compute.disks.list", lambda c: c.fake.aggregated(c.project, "disks", c.query)),
    # Operations: GET polls, POST .../wait returns at once (they are all DONE)
    *[
        (
            method,
            f"/{scope}/operations/<operation>{suffix}",
            f"compute.{kind}Operations.get",
            (lambda s: lambda c: c.fake.get_operation(c.project, s.format(**c.args), c["operation"]))(fmt),
        )
        for scope, kind, fmt in (
            ("global", "global", "global"),
            ("zones/<zone>", "zone", "zones/{zone}"),
            ("regions/<region>", "region", "regions/{region}"),
        )
        for method, suffix in (("GET", ""), ("POST", "/wait"))
    ],
]

# Besides the permission of the route, what GCE also checks on the project.
_ALSO_NEEDED = {"compute.instances.create": ("compute.disks.create",)}


class ComputeApi:
    """The WSGI application for compute.googleapis.com, www.googleapis.com (`/compute/v1/...`)
    and oauth2.googleapis.com (`/token`)."""

    def __init__(self, fake: ComputeEngine) -> None:
        self.fake = fake
        self.urls = Map(
            [
                Rule(_PREFIX + path, endpoint=index, methods=[method])
                for index, (method, path, _, _) in enumerate(ROUTES)
            ],
            strict_slashes=False,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.respond(request)
        return response(environ, start_response)

    def respond(self, request: Request) -> Response:
        if request.path in ("/token", "/oauth2/v4/token") and request.method == "POST":
            return self._token(request)
        if request.path == "/_fake/state" and request.method == "GET":
            return _json(200, self.fake.state())
        try:
            return _json(200, self._api(request))
        except ApiError as exc:
            return _json(exc.code, exc.body(), exc.headers)

    def _api(self, request: Request) -> Doc:
        adapter = self.urls.bind("compute.googleapis.com")
        try:
            endpoint, args = adapter.match(request.path, method=request.method)
        except HTTPException as exc:
            raise method_not_found(request.method, request.path) from exc
        method, _, permission, handler = ROUTES[int(endpoint)]
        principal = self.fake.tokens.authenticate(request.headers.get("Authorization"), host=request.host)
        self.fake.tokens.check(principal, method)
        project = str(args["project"])
        self.fake.require_project(project)
        resource = request.path.removeprefix("/compute/v1/")
        for needed in (permission, *_ALSO_NEEDED.get(permission, ())):
            self.fake.authorize(project, needed, resource)
        if "zone" in args:
            self.fake.require_zone(project, str(args["zone"]))
        if "region" in args:
            self.fake.require_region(project, str(args["region"]))
        return handler(Call(self.fake, request, {k: str(v) for k, v in args.items()}, principal))

    def _token(self, request: Request) -> Response:
        try:
            return _json(200, self.fake.tokens.grant(request.form))
        except OAuthError as exc:
            return _json(400, {"error": exc.error, "error_description": exc.description})


class MetadataApi:
    """The metadata server's answers Google's libraries ask for before they trust their
    credentials (`GCE_METADATA_HOST` points them here): the default service account's email,
    the project; 404 for the rest, so that nothing takes this for a real instance."""

    def __init__(self, fake: ComputeEngine) -> None:
        self.fake = fake

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        headers = {"Metadata-Flavor": "Google"}
        if request.headers.get("Metadata-Flavor") != "Google":
            response = Response("Missing Metadata-Flavor:Google header.\n", 403, headers, mimetype="text/plain")
            return response(environ, start_response)
        email = self.fake.metadata_email
        answers = {
            "/computeMetadata/v1/instance/service-accounts/default/email": email,
            "/computeMetadata/v1/project/project-id": email.split("@")[1].split(".")[0] if email else None,
        }
        answer = answers.get(request.path)
        if answer is None:
            response = Response("Not Found\n", 404, headers, mimetype="text/plain")
        else:
            response = Response(answer, 200, headers, mimetype="application/text")
        return response(environ, start_response)


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, dict(headers or {}), content_type="application/json; charset=UTF-8")
