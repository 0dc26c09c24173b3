"""Real redis-server processes on loopback for tests, and the fixtures that start them."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; ``restart()`` keeps its port (for outage tests)."""

    def __init__(
        self, password: str | None = None, port: int | None = None, *, tls: bool = False
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.binary = binary
        self.password = password
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="channelapp-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.ca_file = self.dir / "server.crt"
        if tls:
            write_self_signed(self.ca_file, self.dir / "server.key")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        if self.tls:  # TLS only: the plain port is closed
            argv += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.ca_file),
                "--tls-key-file", str(self.dir / "server.key"),
                "--tls-ca-cert-file", str(self.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.proc.returncode}"
                )
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within 10s")

    def ping(self) -> bool:
        try:
            return self.command("PING") == "+PONG"
        except OSError:
            return False

    def command(self, *args: str) -> str:
        """Send one command over a raw socket and return the first reply line (test helper)."""
        with self._connect() as s:
            payload = b""
            if self.password:
                payload += _resp(["AUTH", self.password])
            payload += _resp(list(args))
            s.sendall(payload)
            data = b""
            want_lines = 2 if self.password else 1
            while data.count(b"\r\n") < want_lines:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.split(b"\r\n")[want_lines - 1].decode()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        if not self.tls:
            return sock
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def write_self_signed(cert_path: Path, key_path: Path) -> None:
    """A self-signed certificate for 127.0.0.1 (its own CA), for a TLS redis-server."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


async def redis_info(server: RedisServer, section: str) -> dict[str, Any]:
    """``INFO section`` of ``server``, read on a client of its own."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(server.url)
    try:
        return await client.info(section)
    finally:
        await client.aclose()


async def command_calls(server: RedisServer, command: str) -> int:
    """How many times ``server`` has run ``command`` (INFO commandstats)."""
    stats = await redis_info(server, "commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def client_count(server: RedisServer) -> int:
    """Clients connected to ``server``, not counting the one asking."""
    return int((await redis_info(server, "clients"))["connected_clients"]) - 1


def _resp(args: list[str]) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a.encode()
        out += f"${len(b)}\r\n".encode() + b + b"\r\n"
    return out


@contextlib.contextmanager
def redis_servers(count: int, password: str | None = None) -> Iterator[list[RedisServer]]:
    servers: list[RedisServer] = []
    try:
        for _ in range(count):
            servers.append(RedisServer(password=password).start())
        yield servers
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with redis_servers(1) as servers:
        yield servers[0]


@pytest.fixture
def redis_shards() -> Iterator[list[RedisServer]]:
    """Three independent redis-servers: the sharding tests' cluster."""
    with redis_servers(3) as servers:
        yield servers


@pytest.fixture(scope="session")
def redis_session_server() -> Iterator[RedisServer]:
    """One redis-server for the whole run; tests using it must use unique key prefixes."""
    with redis_servers(1) as servers:
        yield servers[0]
