"""A recording SSH server: what Packer's `azure-arm` connects to when no real machine boots.

Packer 1.6.6's `azure-arm` always runs its SSH step, so a build against the fake needs an SSH
server at the public IP the fake reports. This one accepts any user, key or password, answers
`scp -t` uploads (the sink side of the protocol, as the shell and file provisioners use it),
and records every command and uploaded file; it runs nothing and every command exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import posixpath
import shlex
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Command:
    user: str
    command: str


@dataclass
class RecordingSshServer:
    port: int = 0
    commands: list[Command] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)  # remote path -> content
    logins: list[tuple[str, str]] = field(default_factory=list)  # (user, "publickey" | "password")
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _acceptor: asyncssh.SSHAcceptor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, *, host: str = "127.0.0.1", port: int = 0, netns: Path | None = None) -> RecordingSshServer:
        """Listen on `host`:`port` (0: any free port), inside the network namespace `netns`
        (e.g. /proc/PID/ns/net) when given."""
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
        sock = _listening_socket(host, port, netns)
        server = cls(port=int(sock.getsockname()[1]))
        loop = asyncio.new_event_loop()
        server._loop = loop
        server._thread = threading.Thread(target=loop.run_forever, name=f"sshd-{server.port}")
        server._thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(server._listen(sock), loop)
            server._acceptor = future.result(timeout=30)
        except BaseException:
            server.stop()
            raise
        return server

    async def _listen(self, sock: socket.socket) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            sock=sock,
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            server_factory=lambda: _AnyLogin(self),
            process_factory=self._process,
            encoding=None,
        )

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._acceptor is not None:
            acceptor = self._acceptor

            async def close() -> None:
                acceptor.close()
                await acceptor.wait_closed()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._acceptor = None

    def __enter__(self) -> RecordingSshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ran(self, text: str) -> bool:
        """Whether any recorded command contains `text`."""
        with self._lock:
            return any(text in c.command for c in self.commands)

    async def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""
        user = process.get_extra_info("username") or ""
        with self._lock:
            self.commands.append(Command(user, command))
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        flags = {flag for word in words[1:] if word.startswith("-") for flag in _flags(word)}
        if words[:1] == ["scp"] and "-t" in flags:
            await self._scp_sink(process, words[-1])
        process.exit(0)

    async def _scp_sink(self, process: asyncssh.SSHServerProcess[bytes], target: str) -> None:
        """The receiving side of `scp -t TARGET`: C (file), D/E (directory), T (times) records,
        each acknowledged with a zero byte."""
        directories = [target]
        process.stdout.write(b"\0")
        while True:
            line = await process.stdin.readline()
            if not line:
                return
            kind, header = line[:1], line[1:].decode(errors="replace").rstrip("\n")
            if kind == b"C":
                _mode, size, name = header.split(" ", 2)
                process.stdout.write(b"\0")
                content = await process.stdin.readexactly(int(size))
                await process.stdin.readexactly(1)  # the sender's zero byte after the data
                with self._lock:
                    self.uploads[posixpath.join(directories[-1], name)] = content
            elif kind == b"D":
                directories.append(posixpath.join(directories[-1], header.split(" ", 2)[2]))
            elif kind == b"E":
                directories.pop()
            elif kind != b"T":
                process.stdout.write(b"\x01unsupported scp record\n")
                return
            process.stdout.write(b"\0")


def _flags(word: str) -> list[str]:
    """`-vt` -> [`-v`, `-t`]."""
    return [f"-{c}" for c in word[1:]] if not word.startswith("--") else [word]


class _AnyLogin(asyncssh.SSHServer):
    def __init__(self, server: RecordingSshServer) -> None:
        self._server = server
        self._user = ""

    def begin_auth(self, username: str) -> bool:
        self._user = username
        return True  # authentication is asked for, and any answer will do

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        with self._server._lock:
            self._server.logins.append((username, "publickey"))
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        with self._server._lock:
            self._server.logins.append((username, "password"))
        return True


def _listening_socket(host: str, port: int, netns: Path | None) -> socket.socket:
    if netns is None:
        return socket.create_server((host, port))
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def bind() -> None:  # setns moves only the calling thread: a thread of its own, then gone
        try:
            made.append(_socket_in(netns, host, port))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=bind, name="sshd-netns")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def _socket_in(netns: Path, host: str, port: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
        try:
            return socket.create_server((host, port))
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:  # a thread of ours never stays elsewhere
                os._exit(70)
    finally:
        os.close(own)
        os.close(target)
