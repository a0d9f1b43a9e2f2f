"""Network faults between a worker and the real PostgreSQL: a TCP proxy on the loopback that can cut
a connection at a chosen moment of the PostgreSQL protocol (nothing is mocked: the bytes are the
real ones, the server is the real one)."""

from __future__ import annotations

import socket
import threading


class PostgresProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL.

    ``cut_at_commit(deliver=...)`` arms a one-time fault on the landing transaction (the one that
    writes staging.ingest_batches): at its COMMIT the client's connection is cut either before the
    COMMIT reaches the server (nothing committed) or after (committed, but the client never hears
    it: the outcome is unknown to it). ``refuse()`` closes every connection and refuses new ones.
    """

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.refusing = False
        self.armed: bool | None = None  # None: no fault; True/False: deliver the COMMIT or not
        self.cuts = 0
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_at_commit(self, *, deliver: bool) -> None:
        self.armed = deliver

    def refuse(self) -> None:
        self.refusing = True
        with self._lock:
            for a, b in self._pairs:
                _close(a, b)
            self._pairs.clear()

    def close(self) -> None:
        self.refuse()
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._pairs.append((client, upstream))
            state = {"landing": False}
            threading.Thread(target=self._pump, args=(client, upstream, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self.armed is not None:
                    if b"staging.ingest_batches" in data:
                        state["landing"] = True
                    if state["landing"] and b"COMMIT\x00" in data:
                        with self._lock:
                            deliver, self.armed = self.armed, None
                        if deliver is not None:
                            if deliver:
                                dst.sendall(data)
                                src.settimeout(None)
                                threading.Event().wait(0.5)  # let the server commit before the cut
                            self.cuts += 1
                            _close(src, dst)
                            return
                dst.sendall(data)
        except OSError:
            pass
        _close(src, dst)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
