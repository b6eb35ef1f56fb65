"""A small blocking WebSocket client (wsproto over a socket) for tests against a live host.

Real frames over a real TCP connection: ``send`` a JSON message, ``recv`` the next one (or
``None`` once the server closed), and ``stop_reading`` leaves the socket unread to play a slow
client.
"""

from __future__ import annotations

import json
import socket
from collections import deque
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

__all__ = ["WsClient"]


class WsClient:
    def __init__(self, port: int, target: str, *, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox: deque[Any] = deque()
        self.closed: int | None = None  # the close code, once the server closed
        self.rejected = False
        self._text: list[str] = []
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target=target)))
        while not self._accepted():
            self._pump()

    def _accepted(self) -> bool:
        return getattr(self, "_is_open", False) or self.rejected

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self._is_open = True
            elif isinstance(event, RejectConnection):
                self.rejected = True
                self.closed = event.status_code
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.inbox.append(json.loads("".join(self._text)))
                    self._text.clear()
            elif isinstance(event, BytesMessage):
                self.inbox.append(event.data)
            elif isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.closed = event.code
                if self.ws.state.name not in ("CLOSED", "LOCAL_CLOSING"):
                    self.sock.sendall(self.ws.send(event.response()))
        if not data and self.closed is None:
            self.closed = 1006

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(message))))

    def send_raw(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def recv(self) -> Any:
        """The next message, or None once the connection closed."""
        while not self.inbox:
            if self.closed is not None:
                return None
            self._pump()
        return self.inbox.popleft()

    def recv_event(self, kind: str) -> dict[str, Any]:
        """Skip to the next message whose ``event`` is ``kind``."""
        while True:
            message = self.recv()
            assert message is not None, f"closed ({self.closed}) before a {kind!r} event"
            if message.get("event") == kind:
                return dict(message)

    def close(self) -> None:
        """Close (once; again is a no-op)."""
        if self.sock.fileno() < 0:
            return
        try:
            if self.closed is None and self.ws.state is ConnectionState.OPEN:
                self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except OSError:
            pass
        finally:
            self.sock.close()
