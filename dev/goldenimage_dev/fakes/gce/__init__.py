"""A stateful fake of Compute Engine (and Google's OAuth token endpoint) as a WSGI application,
reached at the real host names through the TLS edge (`goldenimage_dev.edge`)::

    gce = ComputeEngine(hypervisor)
    gce.add_image("debian-cloud", "debian-12-bookworm-v20240910", family="debian-12")
    gce.write_service_account_key(directory / "sa.json", "my-project")
    edge = Edge.start(directory / "edge", gce.routes())

Modules: `state` (ComputeEngine: the resources, the machines behind them, the Python API for
tests), `routes` (the REST paths), `tokens` (keys, the token endpoint, credential checks),
`filters` (list filters), `errors` (error responses), `links` and `catalog` (URLs; zones and
machine types).
"""

from .errors import ApiError
from .routes import API_HOSTS, METADATA_HOST, TOKEN_HOST
from .state import QUOTA_METRICS, ComputeEngine
from .tokens import TOKEN_URI

__all__ = ["API_HOSTS", "METADATA_HOST", "QUOTA_METRICS", "TOKEN_HOST", "TOKEN_URI", "ApiError", "ComputeEngine"]
