"""The lab's apt gateway: an HTTP proxy inside the lab (at the gateway address, port 3142) that
lets machines reach the host's Debian mirrors and nothing else.

It dials out from the host's original network namespace: each connection's thread enters that
namespace (`setns` moves only the calling thread) after accepting the client in the lab, so the
client socket stays in the lab and upstream sockets and name lookups happen outside. Packages
and by-hash index files never change under their URL, so they are cached on disk (under
~/.cache/goldenimage/apt/) and served from there afterwards; other files (Release files,
mutable indexes) always go upstream. A request for any other host, port or method gets 403.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import logging
import os
import shutil
import socketserver
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from . import namespaces

log = logging.getLogger("goldenimage_dev.machines.gateway")

PORT = 3142
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_CHUNK = 1 << 16


def cacheable(path: str) -> bool:
    """Content that never changes under its URL: packages and files fetched by hash."""
    return path.endswith((".deb", ".udeb", ".dsc")) or "/by-hash/" in path


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    gateway: AptGateway


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        if self.server.gateway.outside is not None:
            namespaces.setns(self.server.gateway.outside, namespaces.CLONE_NEWNET)
        self._upstream: dict[str, http.client.HTTPConnection] = {}

    def finish(self) -> None:
        for connection in self._upstream.values():
            connection.close()
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        log.debug(format, *args)

    def do_GET(self) -> None:
        self._proxy(body=True)

    def do_HEAD(self) -> None:
        self._proxy(body=False)

    def do_CONNECT(self) -> None:
        self._refuse(self.path.rsplit(":", 1)[0], "CONNECT")

    # Nothing but reading from the mirror.
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT  # noqa: N815

    def _refuse(self, host: str, why: str) -> None:
        self.server.gateway.record("REFUSED", f"{why} {host}")
        self.send_error(403, "only the Debian mirrors are reachable from the lab")

    def _proxy(self, *, body: bool) -> None:
        url = urlsplit(self.path)
        host = url.hostname or ""
        if url.scheme != "http" or host not in self.server.gateway.hosts or url.port not in (None, 80):
            self._refuse(host or self.path, self.command)
            return
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        gateway = self.server.gateway
        cached = gateway.cached(host, url.path)
        if cached is not None and not url.query:
            gateway.record("HIT", self.path)
            self._send_file(cached, body=body)
            return
        try:
            response = self._fetch(host, path)
        except OSError as exc:
            gateway.record("FAILED", f"{self.path}: {exc}")
            self.send_error(502, f"upstream: {exc}")
            return
        gateway.record("MISS", f"{self.path} {response.status}")
        store = (
            body and response.status == 200 and cacheable(url.path) and not url.query and "Range" not in self.headers
        )
        self._relay(response, gateway.store(host, url.path) if store else None, body=body)

    def _fetch(self, host: str, path: str) -> http.client.HTTPResponse:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
        for attempt in range(2):  # a kept-alive upstream connection may have been closed meanwhile
            connection = self._upstream.get(host)
            if connection is None:
                connection = self._upstream[host] = http.client.HTTPConnection(host, 80, timeout=60)
            try:
                connection.request(self.command, path, headers=headers)
                return connection.getresponse()
            except (http.client.HTTPException, OSError):
                connection.close()
                del self._upstream[host]
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _relay(self, response: http.client.HTTPResponse, sink: _Sink | None, *, body: bool) -> None:
        length = response.getheader("Content-Length")
        payload = b""
        if body and length is None:  # chunked upstream: read it whole to send a length
            payload = response.read()
            length = str(len(payload))
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        if not body or self.command == "HEAD" or response.status in (204, 304):
            response.read()
            return
        with sink if sink is not None else contextlib.nullcontext() as out:
            for chunk in [payload] if payload else iter(lambda: response.read(_CHUNK), b""):
                self.wfile.write(chunk)
                if out is not None:
                    out.write(chunk)
            if out is not None:
                out.complete(int(length or 0))

    def _send_file(self, path: Path, *, body: bool) -> None:
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("X-Cache", "HIT")
        self.end_headers()
        if body:
            with path.open("rb") as source:
                shutil.copyfileobj(source, self.wfile, _CHUNK)


class _Sink:
    """A file being cached: renamed into place only when complete, so a cut-off download is never
    served."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        self.file: BinaryIO = self.partial.open("wb")
        self.written = 0
        self.done = False

    def __enter__(self) -> _Sink:
        return self

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.written += len(chunk)

    def complete(self, length: int) -> None:
        self.done = self.written == length

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        if self.done and exc[0] is None:
            os.replace(self.partial, self.target)
        else:
            self.partial.unlink(missing_ok=True)


class AptGateway:
    """The proxy; `outside` is an open fd of the network namespace to dial out from (None: this
    thread's own)."""

    def __init__(
        self,
        address: str,
        *,
        hosts: Iterable[str],
        cache: Path,
        outside: int | None,
        port: int = PORT,
        journal: Path | None = None,
    ) -> None:
        self.hosts = frozenset(hosts)
        self.cache = cache
        self.outside = outside
        self.journal = journal
        self._journal_lock = threading.Lock()
        self._server = _Server((address, port), _Handler)
        self._server.gateway = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="apt-gateway")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> AptGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def cached(self, host: str, path: str) -> Path | None:
        if not cacheable(path):
            return None
        target = self._path(host, path)
        return target if target is not None and target.is_file() else None

    def store(self, host: str, path: str) -> _Sink | None:
        target = self._path(host, path)
        return _Sink(target) if target is not None else None

    def _path(self, host: str, path: str) -> Path | None:
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
            return None
        return self.cache.joinpath(host, *parts)

    def record(self, outcome: str, what: str) -> None:
        """One line per request in the journal: HIT, MISS, REFUSED or FAILED and the URL."""
        log.info("%s %s", outcome, what)
        if self.journal is not None:
            with self._journal_lock, self.journal.open("a") as out:
                out.write(f"{outcome} {what}\n")
