"""A counting TCP proxy: round trips per job, the same way for every system and protocol.

A round trip is counted when a client sends after it has received something since its previous
send (pipelined or split sends count once). Each round trip's time is kept, so the harness counts
only those between the body's stamps on job 1 and job n.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time


class CountingProxy:
    """Listen on a free port; forward every connection to ``(host, port)``; record round-trip times."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def count_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in self.times if start <= t <= end)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        replied = True  # the first send of a connection is a round trip
        try:
            while True:
                for key, _ in sel.select():
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is client:
                        if replied:
                            with self._lock:
                                self.times.append(time.time())
                            replied = False
                    else:
                        replied = True
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            client.close()
            upstream.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
