"""A Redis Sentinel group on loopback, for tests and benchmarks: a master, one replica and
three sentinels (real ``redis-server`` and ``redis-server --sentinel`` processes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import redis

from devtools.procs import free_port
from devtools.redis import RedisServer
from devtools.tcp_proxy import TcpProxy

MASTER_NAME = "channelapp"


class SentinelProcess:
    """One ``redis-server --sentinel`` on 127.0.0.1 watching ``master`` (on ``port``, a proxy's,
    when given)."""

    def __init__(
        self,
        master: RedisServer,
        *,
        port: int | None = None,
        down_after_ms: int,
        failover_timeout_ms: int,
        password: str | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="channelapp-sentinel-"))
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            "daemonize no",
            f"dir {self.dir}",
            "loglevel warning",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {port or master.port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if master.password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {master.password}")
        if password:
            lines.append(f"requirepass {password}")
            # The sentinels talk to each other with the same password.
            lines.append(f"sentinel sentinel-pass {password}")
        self.config = self.dir / "sentinel.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2
        )

    def start(self) -> SentinelProcess:
        self.proc = subprocess.Popen(
            [self.binary, str(self.config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sentinel on port {self.port} exited with {self.proc.returncode}"
                )
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return self
            time.sleep(0.02)
        raise RuntimeError(f"sentinel on port {self.port} did not answer PING within 10s")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A master, one replica (``REPLICAOF`` the master) and three sentinels watching them; with
    ``proxy``, the master is known to all by the proxy's port."""

    def __init__(
        self,
        servers: list[RedisServer],
        sentinels: list[SentinelProcess],
        proxy: TcpProxy | None = None,
    ) -> None:
        self.servers = servers
        self.sentinels = sentinels
        self.master, self.replica = servers
        self.proxy = proxy

    def url(self, *, failover_timeout: float | None = None, db: int = 0) -> str:
        """The layer's ``redis+sentinel://`` URL for this group."""
        password = self.master.password
        auth = f":{quote(password, safe='')}@" if password else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query = []
        if self.sentinels[0].password:
            query.append(f"sentinel_password={quote(self.sentinels[0].password, safe='')}")
        if failover_timeout is not None:
            query.append(f"failover_timeout={failover_timeout}")
        tail = f"?{'&'.join(query)}" if query else ""
        return f"redis+sentinel://{auth}{hosts}/{MASTER_NAME}/{db}{tail}"

    def client(self, server: RedisServer) -> redis.Redis:
        return group_client(server)

    def master_port(self) -> int:
        """Where the first sentinel says the master is."""
        with self.sentinels[0].client() as client:
            _host, port = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return int(port)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the replica is in sync and every sentinel knows the replica and the others
        (a failover needs a majority of the sentinels to agree)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError("the sentinel group did not settle within the timeout")

    def _ready(self) -> bool:
        with contextlib.suppress(redis.RedisError):
            with self.client(self.replica) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    fields = client.sentinel_master(MASTER_NAME)
                    if int(fields["num-other-sentinels"]) < len(self.sentinels) - 1:
                        return False
                    if int(fields["num-slaves"]) < 1:
                        return False
            return True
        return False

    def wait_replicated(self, timeout: float = 5.0) -> None:
        """Until the replica has everything the master has written (``WAIT``)."""
        with self.client(self.master) as master:
            if int(master.execute_command("WAIT", 1, int(timeout * 1000))) < 1:
                raise RuntimeError("the replica did not catch up")

    def wait_demoted(self, timeout: float = 30.0) -> None:
        """Until the first master says it is a replica (after a failover it survived)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError), self.client(self.master) as old:
                if old.execute_command("ROLE")[0] in (b"slave", "slave"):
                    return
            time.sleep(0.05)
        raise RuntimeError("the old master was not turned into a replica within the timeout")

    def require_a_replica(self) -> None:
        """``min-replicas-to-write 1`` on the master, once it counts its replica as good
        (until then it would refuse writes with NOREPLICAS)."""
        with self.client(self.master) as master:
            master.config_set("min-replicas-to-write", 1)
            deadline = time.monotonic() + 10
            while int(master.info("replication").get("min_slaves_good_slaves", 0)) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the master does not count its replica as good")
                time.sleep(0.05)

    def kill_master(self) -> None:
        """SIGKILL the master (no shutdown, no last words to the replica)."""
        proc = self.master.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def wait_promoted(self, timeout: float = 30.0) -> float:
        """Seconds until every sentinel names the replica as the master."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            ports = set()
            with contextlib.suppress(redis.RedisError):
                for sentinel in self.sentinels:
                    with sentinel.client() as client:
                        reply = client.execute_command(
                            "SENTINEL", "get-master-addr-by-name", MASTER_NAME
                        )
                        ports.add(int(reply[1]))
            if ports == {self.replica.port}:
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError("the replica was not promoted within the timeout")


@contextlib.contextmanager
def sentinel_group(
    *,
    password: str | None = None,
    sentinel_password: str | None = None,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 5000,
    proxied: bool = False,
) -> Iterator[SentinelGroup]:
    """Start a master, a replica and three sentinels; stop and remove them afterwards. With
    ``proxied`` the master is reached through a :class:`TcpProxy` (``group.proxy``)."""
    servers: list[RedisServer] = []
    sentinels: list[SentinelProcess] = []
    proxy: TcpProxy | None = None
    try:
        master = RedisServer(password=password).start()
        servers.append(master)
        if proxied:
            proxy = TcpProxy(master.port)
        port = proxy.port if proxy is not None else master.port
        replica = RedisServer(password=password).start()
        servers.append(replica)
        with group_client(replica) as client:
            if password:
                client.config_set("masterauth", password)
            client.execute_command("REPLICAOF", "127.0.0.1", port)
        for _ in range(3):
            sentinels.append(
                SentinelProcess(
                    master,
                    port=port,
                    down_after_ms=down_after_ms,
                    failover_timeout_ms=failover_timeout_ms,
                    password=sentinel_password,
                ).start()
            )
        group = SentinelGroup(servers, sentinels, proxy)
        group.wait_ready()
        yield group
    finally:
        for sentinel in sentinels:
            sentinel.cleanup()
        if proxy is not None:
            proxy.close()
        for server in servers:
            server.cleanup()


def group_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=server.port, password=server.password, socket_timeout=2
    )
