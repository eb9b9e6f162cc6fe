"""A socket on wsguard's `/connect` from Python (the `websockets` library), speaking the JSON
frames of docs/protocol.md: open it with a token by any transport, read frames by type, see how it
closed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

TRANSPORTS = ("header", "subprotocol", "query", "auth_frame")
TIMEOUT = 5.0


class Socket:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        #: Frames read while waiting for another kind, in order; `expect` looks here first.
        self.pending: list[dict[str, Any]] = []
        #: The server's first frame, `{"type": "welcome", "user": …, "exp": …}`.
        self.welcome: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def frame(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame off the wire."""
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(text, str), f"a binary frame: {text!r}"
        frame = json.loads(text)
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        return frame

    async def expect(self, *kinds: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The first frame, pending or next, of one of `kinds`; others stay pending (an
        `expiring` warning, a publication of another channel)."""
        for i, frame in enumerate(self.pending):
            if frame["type"] in kinds:
                return self.pending.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                frame = await self.frame(max(deadline - loop.time(), 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"no {kinds} frame in {timeout}s; got {self.pending}"
                ) from None
            if frame["type"] in kinds:
                return frame
            self.pending.append(frame)

    async def request(self, frame: dict[str, Any], answer: str) -> dict[str, Any]:
        """Sends `frame`; the frame answering it: of type `answer`, or an `error`."""
        await self.send(frame)
        return await self.expect(answer, "error")

    async def subscribe(self, channel: str) -> dict[str, Any]:
        return await self.request({"type": "subscribe", "channel": channel}, "subscribed")

    async def close_code(self, timeout: float = TIMEOUT) -> int:
        """Reads until the server closes the socket: its close code."""
        try:
            while True:
                self.pending.append(await self.frame(timeout))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code
        except TimeoutError:
            raise AssertionError(f"still open after {timeout}s") from None


class Refused(Exception):
    """wsguard did not admit the socket: `status` when it answered the upgrade with an HTTP
    error, `close_code` when it closed the socket before `welcome`."""

    def __init__(self, status: int | None = None, close_code: int | None = None, reason: str = ""):
        super().__init__(f"refused: status {status}, close {close_code} {reason!r}")
        self.status, self.close_code, self.reason = status, close_code, reason


@contextlib.asynccontextmanager
async def connect(
    url: str,
    token: str,
    transport: str = "header",
    origin: str | None = None,
    cookie: str | None = None,
) -> AsyncIterator[Socket]:
    """A socket admitted with `token` sent by `transport` (one of TRANSPORTS, or "none": no token,
    for the application's connect proxy to admit by `cookie`): its `welcome` frame has been read.
    Raises `Refused` otherwise."""
    headers: dict[str, str] = {}
    subprotocols = None
    if cookie is not None:
        headers["Cookie"] = cookie
    if transport == "none":
        pass
    elif transport == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif transport == "subprotocol":
        subprotocols = ["bearer", token]
    elif transport == "query":
        url = f"{url}?token={token}"
    else:
        assert transport == "auth_frame", transport
    if origin is not None:
        headers["Origin"] = origin
    try:
        ws = await websockets.connect(
            url,
            additional_headers=headers,
            subprotocols=subprotocols,
            open_timeout=TIMEOUT,
            close_timeout=2,
        )
    except InvalidStatus as refused:
        raise Refused(status=refused.response.status_code) from None
    async with ws:
        socket = Socket(ws)
        if transport == "subprotocol":
            assert ws.subprotocol == "bearer", ws.subprotocol
        if transport == "auth_frame":
            await socket.send({"type": "auth", "token": token})
        try:
            socket.welcome = await socket.frame()
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            raise Refused(
                close_code=rcvd.code if rcvd else None, reason=rcvd.reason if rcvd else ""
            ) from None
        assert socket.welcome["type"] == "welcome", socket.welcome
        yield socket


async def refusal(url: str, token: str, transport: str = "header") -> Refused:
    """How wsguard refuses `token`; fails if the socket is admitted."""
    try:
        async with connect(url, token, transport) as socket:
            raise AssertionError(f"admitted: {socket.welcome}")
    except Refused as refused:
        return refused


async def eventually(check: Any, within: float = 5.0) -> Any:
    """`await check()` until it stops failing an assertion: for what wsguard does within a bound
    but not at once (fetching a JWKS again after a rotation is rate limited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await check()
        except (AssertionError, Refused):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.25)
