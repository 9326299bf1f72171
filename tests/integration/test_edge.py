"""The TLS edge: clients reach the applications routed to the clouds' host names through it, with
its CA; everything else is refused; a client confined to loopback reaches it and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
import requests

from goldenimage_dev.edge import Edge
from support import components, procs

pytestmark = pytest.mark.integration


def echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """What the request looked like to the application."""
    body = environ["wsgi.input"].read()
    answer = {
        "host": environ.get("HTTP_HOST"),
        "scheme": environ["wsgi.url_scheme"],
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "body": body.decode(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    started = Edge.start(tmp_path / "edge", {"api.example.test": echo, "*.svc.example.test": echo})
    try:
        yield started
    finally:
        started.stop()
    assert started.threads() == []


def _session(edge: Edge) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": edge.proxy_url, "http": edge.proxy_url}
    session.verify = str(edge.ca_file)
    return session


def test_a_routed_host_is_served_by_its_application_over_tls(edge: Edge) -> None:
    with _session(edge) as session:
        answer = session.post("https://api.example.test/v1/things?x=1", json={"a": 1}, timeout=10).json()
    assert answer == {
        "host": "api.example.test",
        "scheme": "https",
        "method": "POST",
        "path": "/v1/things",
        "query": "x=1",
        "body": '{"a": 1}',
    }


def test_suffix_routes_cover_every_name_below(edge: Edge) -> None:
    with _session(edge) as session:
        answer = session.get("https://a.b.svc.example.test/deep", timeout=10).json()
    assert answer["host"] == "a.b.svc.example.test"


def test_a_connection_stays_open_for_many_requests(edge: Edge) -> None:
    with _session(edge) as session:
        for n in range(5):
            assert session.get(f"https://api.example.test/{n}", timeout=10).json()["path"] == f"/{n}"
    connects = [e for e in edge.exchanges if e.method == "CONNECT"]
    assert len(connects) == 1
    assert [e.path for e in edge.exchanges if e.method == "GET"] == [f"/{n}" for n in range(5)]


def test_chunked_request_bodies_arrive_whole(edge: Edge) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first,"
        yield b"second,"
        yield b"third"

    with _session(edge) as session:
        answer = session.put("https://api.example.test/upload", data=chunks(), timeout=10).json()
        again = session.get("https://api.example.test/after", timeout=10).json()  # the connection still parses
    assert answer["body"] == "first,second,third"
    assert again["path"] == "/after"


def test_connections_are_served_concurrently(tmp_path: Path) -> None:
    """Each request waits in the application until all of them are in it at once."""
    clients = 4
    together = threading.Barrier(clients, timeout=10)

    def gathering(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        together.wait()
        return echo(environ, start_response)

    with Edge.start(tmp_path / "edge", {"api.example.test": gathering}) as edge:

        def call(n: int) -> str:
            with _session(edge) as session:
                return str(session.get(f"https://api.example.test/{n}", timeout=20).json()["path"])

        with ThreadPoolExecutor(clients) as pool:
            assert sorted(pool.map(call, range(clients))) == [f"/{n}" for n in range(clients)]


def test_an_unknown_host_is_refused_and_recorded(edge: Edge) -> None:
    with _session(edge) as session, pytest.raises(requests.exceptions.ProxyError):
        session.get("https://www.example.com/", timeout=10)
    assert edge.refused == ["www.example.com"]


def test_plain_http_proxying_is_refused(edge: Edge) -> None:
    with _session(edge) as session:
        response = session.get("http://api.example.test/", timeout=10)
    assert response.status_code == 403
    assert edge.refused == ["api.example.test"]


def test_the_certificate_is_only_trusted_with_the_edges_ca(edge: Edge) -> None:
    with _session(edge) as session:
        session.verify = True  # the system's CAs
        with pytest.raises(requests.exceptions.SSLError):
            session.get("https://api.example.test/", timeout=10)


def test_env_points_clients_at_the_edge(edge: Edge) -> None:
    env = edge.env()
    assert env["HTTPS_PROXY"] == env["https_proxy"] == edge.proxy_url
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == str(edge.ca_file)
    assert env["GCE_METADATA_HOST"] == f"127.0.0.1:{edge.port}"
    assert "127.0.0.1" in env["NO_PROXY"]
    assert edge.env(bypass=["10.250.0.0/16"])["no_proxy"].endswith(",10.250.0.0/16")
    # Without a metadata route the edge answers as a metadata server that knows nothing.
    response = requests.get(
        f"http://127.0.0.1:{edge.port}/computeMetadata/v1/instance/id", headers={"Metadata-Flavor": "Google"}, timeout=5
    )
    assert (response.status_code, response.headers["Metadata-Flavor"]) == (404, "Google")


def test_a_client_confined_to_loopback_reaches_the_edge_and_nothing_else(edge: Edge, tmp_path: Path) -> None:
    """In a network namespace of its own with only loopback, nothing can be dialled out: what
    the client gets, it got from the edge."""
    try:
        isolated = edge.isolated(tmp_path / "netns.log")
    except (OSError, subprocess.CalledProcessError, RuntimeError, TimeoutError) as exc:
        components.missing("network namespaces", f"they need root and util-linux's unshare/nsenter: {exc}")
    procs.started([isolated.holder.pid])
    client = (
        "import json, requests\n"
        "print(json.dumps(requests.get('https://api.example.test/inside', timeout=10).json()))\n"
        "try:\n"
        "    requests.get('https://www.example.com/', timeout=10)\n"
        "except requests.exceptions.ProxyError:\n"
        "    print('refused')\n"
    )
    try:
        result = subprocess.run(
            isolated.command([sys.executable, "-c", client]),
            env=edge.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        isolated.stop()
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert json.loads(first)["path"] == "/inside"
    assert second == "refused"
    assert edge.refused == ["www.example.com"]
    assert not procs.alive(isolated.holder.pid)
