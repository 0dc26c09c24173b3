"""A TCP proxy on loopback that can lose a command or its answer on purpose, for tests of what
a client does when its connection breaks with a command in flight.

Connections accepted after :meth:`TcpProxy.mark` are *marked*; on those the proxy can stop
passing the client's bytes on (``hold_requests``: the command never reaches the server) or the
server's bytes back (``drop_replies``: the command runs, its answer is lost). When the server
side closes (the server was killed) the client side is closed too; a new connection whose
server is gone is closed at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from devtools.procs import free_port


class _Link:
    def __init__(self, client: socket.socket, server: socket.socket, marked: bool) -> None:
        self.client = client
        self.server = server
        self.marked = marked

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Listens on 127.0.0.1:``port`` and forwards to 127.0.0.1:``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.hold_requests = False
        self.drop_replies = False
        self.held = 0  # client bytes not passed on
        self.dropped = 0  # server bytes not passed back
        self._marking = False
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = False
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    def mark(self) -> None:
        """Connections accepted from now on are the ones ``hold_requests``/``drop_replies``
        act on (the clients already connected, such as a replica's link, are left alone)."""
        self._marking = True

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=1)
            except OSError:
                client.close()  # the server is gone: refuse as it would
                continue
            server.settimeout(None)
            link = _Link(client, server, self._marking)
            with self._lock:
                self._links.append(link)
            for up in (True, False):
                threading.Thread(target=self._pump, args=(link, up), daemon=True).start()

    def _pump(self, link: _Link, up: bool) -> None:
        src, dst = (link.client, link.server) if up else (link.server, link.client)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if link.marked and up and self.hold_requests:
                    self.held += len(data)
                    continue
                if link.marked and not up and self.drop_replies:
                    self.dropped += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        link.close()  # either side gone: so is the other

    def wait_marked(self, count: int, timeout: float = 5.0) -> None:
        """Until ``count`` marked connections are open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if sum(1 for link in self._links if link.marked) >= count:
                    return
            time.sleep(0.01)
        raise RuntimeError(f"fewer than {count} marked connections within {timeout}s")

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
