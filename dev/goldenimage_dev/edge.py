"""The clouds' TLS edge: a local HTTPS proxy that answers for the clouds' real host names itself.

Packer 1.6.6 and the cloud SDKs have no endpoint option worth relying on, but they all honour
`HTTPS_PROXY` and a CA bundle. The edge accepts `CONNECT host:443` for the hosts it routes,
terminates TLS with a certificate for that host signed by its own test CA, and serves the
requests with the WSGI application routed to the host. Any other host is refused and recorded,
and plain-HTTP proxying is refused too, so nothing a client sends through it is dialled out.

Direct (non-proxy) requests to the edge's port are the Compute Engine metadata server's:
Google's libraries go there instead of 169.254.169.254 when `GCE_METADATA_HOST` names the
edge (`Edge.env()` does). They get the application routed to `metadata.google.internal`, or 404.

The edge runs in threads of the calling process; `listen_in()` adds a listener on the same port
inside another network namespace, and `isolated()` makes such a namespace with only loopback, so
that a client run there provably reaches nothing but the edge.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.server
import io
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from wsgiref.types import WSGIApplication

from werkzeug.serving import DechunkedInput

from . import processes
from .pki import CertificateAuthority

METADATA_HOST = "metadata.google.internal"
LOOPBACK = "127.0.0.1,localhost,::1"
_CLONE_NEWNET = 0x40000000
# Headers that describe one hop, not the response: the edge sets its own framing.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
_IDLE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Exchange:
    """One request the edge served (or refused), for assertions and the log."""

    host: str
    method: str
    path: str
    status: int


def matches(pattern: str, host: str) -> bool:
    """An exact name, or `*.suffix` for any host below `suffix` (at any depth)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass
class Edge:
    directory: Path
    routes: dict[str, WSGIApplication]  # more may be added while it runs
    port: int = 0
    refused: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    _ca: CertificateAuthority | None = None
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)
    _servers: list[_Listener] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _connections: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, directory: Path, routes: Mapping[str, WSGIApplication]) -> Edge:
        """Serve `routes` (host name or `*.suffix` -> WSGI application) on a free loopback port;
        the CA and the leaf certificates go to `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        edge = cls(directory, dict(routes))
        edge._ca = CertificateAuthority(directory)
        listener = _Listener(edge, ("127.0.0.1", 0))
        edge.port = int(listener.server_address[1])
        edge._serve(listener)
        return edge

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The test CA's certificate (PEM): the only CA a client of the edge needs."""
        assert self._ca is not None
        return self._ca.cert_path

    @property
    def log(self) -> Path:
        return self.directory / "edge.log"

    def env(self, *, bypass: Iterable[str] = ()) -> dict[str, str]:
        """What a process needs to reach the clouds through the edge and nowhere else. `bypass`
        adds hosts or CIDRs it reaches directly besides loopback (e.g. a lab network)."""
        ca = str(self.ca_file)
        metadata = f"127.0.0.1:{self.port}"
        no_proxy = ",".join([LOOPBACK, *bypass])
        return {
            "HTTPS_PROXY": self.proxy_url,
            "https_proxy": self.proxy_url,
            # Plain HTTP goes to the edge too, which refuses it, rather than out.
            "HTTP_PROXY": self.proxy_url,
            "http_proxy": self.proxy_url,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "SSL_CERT_FILE": ca,  # Go, OpenSSL
            "REQUESTS_CA_BUNDLE": ca,  # requests (google-auth, azure-core)
            "CURL_CA_BUNDLE": ca,
            # Google's metadata clients dial these directly, past any proxy: Go's
            # cloud.google.com/go/compute/metadata reads GCE_METADATA_HOST, google-auth reads
            # both (GCE_METADATA_IP for its "on GCE?" ping).
            "GCE_METADATA_HOST": metadata,
            "GCE_METADATA_IP": metadata,
        }

    def listen_in(self, netns: Path) -> None:
        """Listen on 127.0.0.1:`port` inside the network namespace `netns` (e.g.
        /proc/PID/ns/net) as well, so that `env()` holds there too. Its loopback must be up."""
        created: list[socket.socket] = []
        failure: list[BaseException] = []

        def bind() -> None:  # in a thread of its own: setns moves only the calling thread
            try:
                created.append(_socket_in(netns, self.port))
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=bind, name=f"edge-{self.port}-netns")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        listener = _Listener(self, ("127.0.0.1", self.port), bind_and_activate=False)
        listener.socket.close()
        listener.socket = created[0]
        self._serve(listener)

    def isolated(self, log: Path) -> Isolated:
        """A new network namespace with nothing but loopback, where the edge listens too: what
        runs there (`Isolated.command`) reaches the edge and nothing else. Needs root."""
        holder = processes.spawn(["unshare", "--net", "--", "sleep", "infinity"], log=log)
        try:
            netns = Path(f"/proc/{holder.pid}/ns/net")
            own = Path("/proc/self/ns/net").stat().st_ino

            def entered() -> bool:
                processes.raise_if_exited("unshare", holder, log)
                return netns.stat().st_ino != own

            processes.wait_until(entered, timeout=10, interval=0.02, what="the new network namespace")
            subprocess.run(["nsenter", f"--net={netns}", "ip", "link", "set", "lo", "up"], check=True, timeout=30)
            self.listen_in(netns)
        except BaseException:
            processes.stop(holder, grace=1)
            raise
        return Isolated(holder, netns)

    def stop(self) -> None:
        """Stop listening, end open connections and wait for the threads serving them."""
        for server in self._servers:
            server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for server in self._servers:
            server.server_close()  # joins the connection threads
        for thread in self._threads:
            thread.join(timeout=10)
        self._servers.clear()
        self._threads.clear()

    def threads(self) -> list[threading.Thread]:
        """The edge's live threads (none once stopped)."""
        mine = f"edge-{self.port}"
        return [t for t in threading.enumerate() if t.name == mine or t.name.startswith(mine + "-")]

    def __enter__(self) -> Edge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # What the handlers use.

    def app_for(self, host: str) -> WSGIApplication | None:
        if host in self.routes:
            return self.routes[host]
        best = max((p for p in self.routes if p.startswith("*.") and matches(p, host)), key=len, default=None)
        return self.routes[best] if best else None

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server context with a leaf certificate for exactly `host` (made once per host)."""
        with self._lock:
            context = self._contexts.get(host)
            if context is None:
                assert self._ca is not None
                pair = self._ca.issue(f"edge-{host}", host, server_names=(host,))
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(pair.cert, pair.key)
                context.set_alpn_protocols(["http/1.1"])  # Go offers h2 first
                self._contexts[host] = context
            return context

    def record(self, exchange: Exchange, *, refused: bool = False) -> None:
        with self._lock:
            self.exchanges.append(exchange)
            if refused:
                self.refused.append(exchange.host)
            with self.log.open("a") as out:
                verdict = "REFUSED " if refused else ""
                out.write(
                    f"{time.strftime('%H:%M:%S')} {verdict}{exchange.status} {exchange.method} "
                    f"{exchange.host}{exchange.path}\n"
                )

    def track(self, connection: socket.socket, *, open: bool) -> None:
        with self._lock:
            if open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _serve(self, listener: _Listener) -> None:
        thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.name = f"edge-{self.port}"
        thread.start()
        self._servers.append(listener)
        self._threads.append(thread)


@dataclass
class Isolated:
    """A network namespace with only loopback, kept by `holder` (a sleeping process)."""

    holder: subprocess.Popen[bytes]
    netns: Path

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    def stop(self) -> None:
        """End the holder; the namespace goes once nothing else uses it (the edge's listener
        there closes with `Edge.stop`)."""
        processes.stop(self.holder, grace=1)


def _socket_in(netns: Path, port: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
        try:
            return socket.create_server(("127.0.0.1", port))
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:  # never leave a thread of ours elsewhere
                os._exit(70)
    finally:
        os.close(own)
        os.close(target)


class _Listener(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = False  # server_close() joins them

    def __init__(self, edge: Edge, address: tuple[str, int], *, bind_and_activate: bool = True) -> None:
        self.edge = edge
        super().__init__(address, _ProxyHandler, bind_and_activate=bind_and_activate)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """One client connection to the proxy port: CONNECT, refused proxying, or metadata."""

    protocol_version = "HTTP/1.1"
    rbufsize = 0  # read no further than the CONNECT request: the TLS handshake follows it
    timeout = _IDLE_TIMEOUT
    server: _Listener

    def setup(self) -> None:
        threading.current_thread().name = f"edge-{self.server.edge.port}-connection"
        super().setup()
        self.server.edge.track(self.connection, open=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.edge.track(self.connection, open=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Edge.record keeps the log

    def do_CONNECT(self) -> None:
        edge = self.server.edge
        host, _, port = self.path.rpartition(":")
        app = edge.app_for(host.lower()) if port == "443" else None
        if app is None:
            edge.record(Exchange(host or self.path, "CONNECT", f":{port}", 403), refused=True)
            self._refuse(f"the edge does not route {self.path}")
            return
        edge.record(Exchange(host.lower(), "CONNECT", ":443", 200))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True  # whatever happens in the tunnel, this connection ends with it
        try:
            tls = edge.context_for(host.lower()).wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client gave up on the handshake (e.g. it does not trust the CA)
        edge.track(tls, open=True)
        try:
            _TunnelHandler(tls, self.client_address, self.server, host.lower(), app)
        finally:
            edge.track(tls, open=False)
            with contextlib.suppress(OSError):
                tls.close()

    def _direct(self) -> None:
        edge = self.server.edge
        target = urlsplit(self.path)
        if target.scheme or not self.path.startswith("/"):
            edge.record(Exchange(target.hostname or self.path, self.command, target.path, 403), refused=True)
            self._refuse("the edge does not proxy plain HTTP")
            return
        app = edge.routes.get(METADATA_HOST)
        if app is None:
            edge.record(Exchange(METADATA_HOST, self.command, self.path, 404))
            self._reply(404, [("Metadata-Flavor", "Google"), ("Content-Type", "text/plain")], b"not found\n")
            return
        _serve_wsgi(self, app, METADATA_HOST, scheme="http")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _direct  # noqa: N815

    def _refuse(self, why: str) -> None:
        self.close_connection = True
        self._reply(403, [("Content-Type", "text/plain")], why.encode() + b"\n")

    def _reply(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        with contextlib.suppress(ValueError, OSError):
            _read_body(self)  # so that a kept-alive connection's next request parses
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _TunnelHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 inside one TLS tunnel, kept alive for as many requests as the client sends."""

    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT
    server: _Listener

    def __init__(
        self, request: socket.socket, address: Any, server: _Listener, host: str, app: WSGIApplication
    ) -> None:
        self.host = host
        self.app = app
        super().__init__(request, address, server)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):  # the client hung up
            super().handle()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def _serve(self) -> None:
        _serve_wsgi(self, self.app, self.host, scheme="https")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve  # noqa: N815


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """The whole request body: `Content-Length` or chunked (Go sends chunked when it streams)."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        return DechunkedInput(handler.rfile).read()  # type: ignore[arg-type]
    length = int(handler.headers.get("Content-Length") or 0)
    body = b""
    while len(body) < length:  # an unbuffered reader returns what has arrived so far
        chunk = handler.rfile.read(length - len(body))
        if not chunk:
            break
        body += chunk
    return body


def _serve_wsgi(handler: _ProxyHandler | _TunnelHandler, app: WSGIApplication, host: str, *, scheme: str) -> None:
    """Run `app` for the request `handler` has parsed and send its response with a length, so
    that the connection can stay open (bodies are small JSON documents: buffering is fine)."""
    body = _read_body(handler)  # http.server has answered `Expect: 100-continue` already
    target = urlsplit(handler.path)
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "REQUEST_METHOD": handler.command,
        "SCRIPT_NAME": "",
        "PATH_INFO": target.path,
        "QUERY_STRING": target.query,
        "REQUEST_URI": handler.path,
        "SERVER_NAME": host,
        "SERVER_PORT": "443" if scheme == "https" else str(handler.server.server_address[1]),
        "SERVER_PROTOCOL": handler.request_version,
        "REMOTE_ADDR": handler.client_address[0] if handler.client_address else "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
    }
    for name, value in handler.headers.items():
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH") or "_" in name:
            continue
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ["HTTP_HOST"] = host if scheme == "https" else environ.get("HTTP_HOST", host)

    status_line = "500 Internal Server Error"
    response_headers: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        nonlocal status_line, response_headers
        status_line, response_headers = status, headers
        return lambda data: chunks.append(data)

    chunks: list[bytes] = []
    try:
        result = app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:
        status_line = "500 Internal Server Error"
        response_headers = [("Content-Type", "text/plain")]
        chunks = [traceback.format_exc().encode()]
    payload = b"".join(chunks)
    code, _, reason = status_line.partition(" ")
    handler.server.edge.record(Exchange(host, handler.command, handler.path, int(code)))
    handler.send_response(int(code), reason)
    for name, value in response_headers:
        if name.lower() not in _HOP_BY_HOP:
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    if handler.close_connection:
        handler.send_header("Connection", "close")
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)
    handler.wfile.flush()
