"""The application's side of wsguard's proxy calls (Centrifugo's proxy format): what each call
brings, what the application answers, and how it refuses or closes the connection.

wsguard POSTs one JSON object per event to the application; the application answers 200 with
``{"result": {...}}``, ``{"error": {"code", "message"}}`` (a refusal the client sees) or
``{"disconnect": {"code", "reason"}}``. Raise :class:`Refuse` or :class:`Disconnect` from a
handler for the latter two; anything else that fails is a failure wsguard treats as temporary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A JSON object as it was decoded.
JSONObject = dict[str, Any]

#: ``PublishResult.data`` left unset: the client's data is published as it was.
_UNCHANGED: Any = object()


class Refuse(Exception):
    """Refuses the call with ``code`` (400-1999 by Centrifugo's convention) and ``message``,
    which the client sees."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def answer(self) -> JSONObject:
        return {"error": {"code": self.code, "message": self.message}}


class Disconnect(Exception):
    """Closes the client's connection with ``code`` (4000-4499: it may reconnect; 4500-4999: it
    must not) and a ``reason`` of at most 32 bytes."""

    def __init__(self, code: int, reason: str) -> None:
        if not 3000 <= code <= 4999:
            raise ValueError("disconnect codes are 3000-4999 (4000-4999 for the application's)")
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    def answer(self) -> JSONObject:
        return {"disconnect": {"code": self.code, "reason": self.reason}}


def _text(body: JSONObject, name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The connection a call is about."""

    #: The connection's id, unique on every node.
    client: str
    transport: str
    protocol: str
    encoding: str

    @staticmethod
    def _of(body: JSONObject) -> ClientInfo:
        return ClientInfo(
            client=_text(body, "client"),
            transport=_text(body, "transport"),
            protocol=_text(body, "protocol"),
            encoding=_text(body, "encoding"),
        )


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A connection without a token asks to be admitted. The client's headers named in wsguard's
    ``forward_headers`` (its session cookie, say) are the HTTP request's own."""

    info: ClientInfo
    name: str
    version: str
    data: Any

    @staticmethod
    def from_json(body: JSONObject) -> ConnectRequest:
        return ConnectRequest(
            ClientInfo._of(body), _text(body, "name"), _text(body, "version"), body.get("data")
        )


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """Admits the connection as ``user`` until ``expire_at`` (Unix seconds; None: no expiry, or
    until the refresh proxy lets it end); ``data`` goes to the client."""

    user: str
    expire_at: int | None = None
    data: Any = None

    def answer(self) -> JSONObject:
        result: JSONObject = {"user": self.user}
        if self.expire_at is not None:
            result["expire_at"] = self.expire_at
        if self.data is not None:
            result["data"] = self.data
        return {"result": result}


@dataclass(frozen=True, slots=True)
class RefreshRequest:
    """A connection the connect proxy admitted reached its ``expire_at``."""

    info: ClientInfo
    user: str

    @staticmethod
    def from_json(body: JSONObject) -> RefreshRequest:
        return RefreshRequest(ClientInfo._of(body), _text(body, "user"))


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """Prolongs the connection to ``expire_at``, or ends it (``expired``)."""

    expire_at: int | None = None
    expired: bool = False

    def answer(self) -> JSONObject:
        if self.expired or self.expire_at is None:
            return {"result": {"expired": True}}
        return {"result": {"expire_at": self.expire_at}}


def _channel_call(body: JSONObject) -> tuple[ClientInfo, str, str, Any]:
    """What a call about a user and a channel brings: the connection, the user, the channel and
    the client's data."""
    return ClientInfo._of(body), _text(body, "user"), _text(body, "channel"), body.get("data")


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """A user asks to follow a channel of a namespace with ``subscribe = "proxy"``."""

    info: ClientInfo
    user: str
    channel: str
    data: Any

    @staticmethod
    def from_json(body: JSONObject) -> SubscribeRequest:
        return SubscribeRequest(*_channel_call(body))


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """Allows the subscription; ``data`` goes to the client, ``expire_at`` (Unix seconds) ends it
    then unless the client subscribes again."""

    data: Any = None
    expire_at: int | None = None

    def answer(self) -> JSONObject:
        result: JSONObject = {}
        if self.data is not None:
            result["data"] = self.data
        if self.expire_at is not None:
            result["expire_at"] = self.expire_at
        return {"result": result}


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """A user publishes to a channel of a namespace with ``publish = "proxy"``."""

    info: ClientInfo
    user: str
    channel: str
    data: Any

    @staticmethod
    def from_json(body: JSONObject) -> PublishRequest:
        return PublishRequest(*_channel_call(body))


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Allows the publication: as the client sent it, or with ``data`` instead."""

    data: Any = field(default=_UNCHANGED)

    def answer(self) -> JSONObject:
        return {"result": {} if self.data is _UNCHANGED else {"data": self.data}}


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """The SDK's ``rpc(method, data)``, from ``user``."""

    info: ClientInfo
    user: str
    method: str
    data: Any

    @staticmethod
    def from_json(body: JSONObject) -> RpcRequest:
        return RpcRequest(
            ClientInfo._of(body), _text(body, "user"), _text(body, "method"), body.get("data")
        )


@dataclass(frozen=True, slots=True)
class RpcResult:
    """The answer to the client's ``rpc``."""

    data: Any = None

    def answer(self) -> JSONObject:
        return {"result": {} if self.data is None else {"data": self.data}}
