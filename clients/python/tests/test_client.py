"""Unit tests of the client that need no wsguard: configuration, argument checks (made before
anything is sent), the mapping of answers to results and errors, timeouts and closing. What the
client sends is checked against a small recording HTTP server on loopback; the calls against a
real wsguard are in tests/interop/test_gateway.py."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

import wsguard_client as wc
from wsguard_client import _protocol

KEY = "wsg_test_0123456789abcdef"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: a call that got past its checks fails to connect."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unreachable(closed_port: int) -> Iterator[wc.WsguardClient]:
    with wc.WsguardClient(f"http://127.0.0.1:{closed_port}", KEY, timeout=2) as client:
        yield client


# --- configuration ---------------------------------------------------------------------------


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSGUARD_URL", "http://127.0.0.1:8000/")
    monkeypatch.setenv("WSGUARD_API_KEY", KEY)
    with wc.WsguardClient() as client:
        assert client.base_url == "http://127.0.0.1:8000"
        assert client._headers["Authorization"] == f"Bearer {KEY}"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSGUARD_URL", "http://env.invalid")
    monkeypatch.setenv("WSGUARD_API_KEY", "from-env")
    with wc.WsguardClient("https://wsguard.example/prefix", "from-arg") as client:
        assert client.base_url == "https://wsguard.example/prefix"
        assert client._headers["Authorization"] == "Bearer from-arg"


@pytest.mark.parametrize("missing", ["WSGUARD_URL", "WSGUARD_API_KEY"])
def test_a_missing_url_or_key_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("WSGUARD_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("WSGUARD_API_KEY", KEY)
    monkeypatch.delenv(missing)
    for make in (wc.WsguardClient, wc.AsyncWsguardClient):
        with pytest.raises(wc.ConfigError, match=missing):
            make()
    monkeypatch.setenv(missing, "  ")
    with pytest.raises(ValueError, match=missing):  # ConfigError is a ValueError too
        wc.WsguardClient()


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8000", "ws://127.0.0.1:8000", "http://", "http://h/?x=1", "ftp://h"]
)
def test_bad_base_urls_are_refused(url: str) -> None:
    with pytest.raises(wc.ConfigError):
        wc.WsguardClient(url, KEY)


def test_the_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    client = wc.WsguardClient("http://127.0.0.1:8000", KEY)
    assert KEY not in repr(client) and KEY not in str(vars(client).get("base_url"))
    client.close()
    with pytest.raises(wc.ConfigError) as refused:
        wc.WsguardClient("http://127.0.0.1:8000", "has space" + KEY)
    assert KEY not in str(refused.value)


# --- arguments, checked before any request (the server would be unreachable) ----------------


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.publish("", {"a": 1}), ValueError),
        (lambda c: c.publish(" news:a", {"a": 1}), ValueError),
        (lambda c: c.publish(5, {"a": 1}), TypeError),
        (lambda c: c.publish("news:a", [1, 2]), TypeError),
        (lambda c: c.publish("news:a", "text"), TypeError),
        (lambda c: c.publish("news:a", {"n": float("nan")}), ValueError),
        (lambda c: c.publish("news:a", {"s": {1, 2}}), TypeError),
        (lambda c: c.broadcast("news:a", {"a": 1}), TypeError),
        (lambda c: c.broadcast([], {"a": 1}), ValueError),
        (lambda c: c.broadcast(["news:a", "news:a"], {"a": 1}), ValueError),
        (lambda c: c.broadcast(["news:a", ""], {"a": 1}), ValueError),
        (lambda c: c.disconnect(""), ValueError),
        (lambda c: c.revoke(".."), ValueError),
        (lambda c: c.revoke(None), TypeError),
        (lambda c: c.presence("bad\nchannel"), ValueError),
        (lambda c: c.history("news:a", limit=0), ValueError),
        (lambda c: c.history("news:a", limit=True), TypeError),
        (lambda c: c.history("news:a", limit="5"), TypeError),
        (lambda c: c.history("news:a", since=-1), ValueError),
    ],
)
def test_bad_arguments_raise_before_anything_is_sent(
    unreachable: wc.WsguardClient, call: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(unreachable)


def test_good_arguments_do_reach_the_network(unreachable: wc.WsguardClient) -> None:
    # The counterpart of the test above: the same client fails only at connecting.
    with pytest.raises(wc.TransportError, match="cannot reach"):
        unreachable.publish("news:a", {"a": 1})


def test_usernames_and_channels_are_escaped_in_paths() -> None:
    assert _protocol.revoke("a/b?c#d%").path == "/api/users/a%2Fb%3Fc%23d%25/revoke"
    assert _protocol.disconnect("jo@example.com").path == "/api/users/jo@example.com/disconnect"
    assert _protocol.presence("room:lobby").path == "/api/channels/room:lobby/presence"
    assert _protocol.history("news:a b").path == "/api/channels/news:a%20b/history"
    assert _protocol.history("news:a").params is None
    assert _protocol.history("news:a", limit=5, since=0).params == {"limit": "5", "since": "0"}


def test_bodies_are_the_documented_json() -> None:
    call = _protocol.publish("news:a", {"text": "é"})
    assert (call.method, call.path) == ("POST", "/api/publish")
    assert json.loads(call.body or b"") == {"channel": "news:a", "data": {"text": "é"}}
    call2 = _protocol.broadcast(("news:a", "news:b"), {"x": None})
    assert json.loads(call2.body or b"") == {"channels": ["news:a", "news:b"], "data": {"x": None}}
    assert _protocol.disconnect("u").body is None


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "family"),
    [
        (401, wc.Unauthorized, wc.AuthError),
        (403, wc.Forbidden, wc.AuthError),
        (400, wc.InvalidRequest, wc.RequestError),
        (422, wc.InvalidRequest, wc.RequestError),
        (413, wc.PayloadTooLarge, wc.RequestError),
        (404, wc.NotFound, wc.RequestError),
        (409, wc.RequestError, wc.ApiError),
        (429, wc.RateLimited, wc.ApiError),
        (500, wc.ServerError, wc.ApiError),
        (503, wc.ServerError, wc.ApiError),
    ],
)
def test_error_statuses_map_to_the_hierarchy(status: int, kind: type, family: type) -> None:
    error = _protocol.error_for(status, {}, b'{"detail":"Not authenticated"}')
    assert type(error) is kind and isinstance(error, family) and isinstance(error, wc.WsguardError)
    assert (error.status, error.detail) == (status, "Not authenticated")
    assert str(error) == f"{status} Not authenticated"


def test_details_that_are_not_wsguards_shape_are_kept_short() -> None:
    assert (
        _protocol.error_for(502, {}, b"<html>Bad Gateway</html>").detail
        == "<html>Bad Gateway</html>"
    )
    assert _protocol.error_for(502, {}, b"").detail == "HTTP 502"
    assert _protocol.error_for(502, {}, b"x" * 10_000).detail == "x" * 200
    listed = _protocol.error_for(422, {}, b'{"detail":[{"loc":["body"]}]}')
    assert listed.detail == '[{"loc": ["body"]}]'


def test_retry_after_in_seconds_or_as_a_date() -> None:
    def limited(value: str | None) -> float | None:
        headers = httpx.Headers({} if value is None else {"Retry-After": value})
        error = _protocol.error_for(429, headers, b'{"detail":"slow down"}')
        assert isinstance(error, wc.RateLimited)
        return error.retry_after

    assert limited("7") == 7.0
    assert limited(None) is None
    assert limited("soon") is None
    assert limited("-3") is None
    in_a_minute = limited(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 58 <= in_a_minute <= 61
    assert limited(formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_successes_are_parsed_and_bad_shapes_are_unexpected() -> None:
    def finish(call: _protocol.Call[Any], body: object, status: int = 200) -> Any:
        return _protocol.finish(call, status, {}, json.dumps(body).encode())

    publish = _protocol.publish("news:a", {})
    assert finish(publish, {"offset": 18}) == 18
    assert finish(publish, {"offset": None}) is None
    for bad in ({}, {"offset": "18"}, {"offset": True}, [18]):
        with pytest.raises(wc.UnexpectedResponse):
            finish(publish, bad)
    with pytest.raises(wc.UnexpectedResponse):
        _protocol.finish(publish, 200, {}, b"not json")

    offsets = finish(_protocol.broadcast(["a:1", "a:2"], {}), {"offsets": {"a:1": 3, "a:2": None}})
    assert offsets == {"a:1": 3, "a:2": None}
    assert finish(_protocol.presence("a:1"), {"users": ["alice", "bob"]}) == ["alice", "bob"]
    with pytest.raises(wc.UnexpectedResponse):
        finish(_protocol.presence("a:1"), {"users": [1]})
    assert finish(_protocol.channels(), {"channels": [{"channel": "a:1", "subscribers": 2}]}) == [
        wc.ChannelInfo("a:1", 2)
    ]
    assert _protocol.finish(_protocol.revoke("u"), 204, {}, b"") is None

    history = finish(
        _protocol.history("a:1"),
        {
            "epoch": "e1",
            "publications": [
                {"offset": 1, "data": {"t": 1}, "from": None, "ts": "2026-01-01T00:00:00Z"},
                {"offset": 2, "data": {"t": 2}, "from": "alice", "channel": "a:1"},
            ],
        },
    )
    assert history == wc.History(
        publications=[
            wc.Publication(1, {"t": 1}, None, "2026-01-01T00:00:00Z"),
            wc.Publication(2, {"t": 2}, "alice", None),
        ],
        epoch="e1",
    )
    bad_histories: list[dict[str, Any]] = [
        {"publications": []},
        {"epoch": "e", "publications": [{"offset": 1}]},
    ]
    for bad_history in bad_histories:
        with pytest.raises(wc.UnexpectedResponse):
            finish(_protocol.history("a:1"), bad_history)


# --- on the wire: a recording HTTP server on loopback ----------------------------------------


class Recorder(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.rfile.read(length),
            }
        )
        status, headers, body = self.answers.pop(0)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("R", (Recorder,), {"answers": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/base", handler
    finally:
        server.shutdown()
        server.server_close()


def _json_answer(status: int, body: object, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


def test_what_the_sync_client_sends(recorder: tuple[str, type[Recorder]]) -> None:
    url, handler = recorder
    handler.answers += [
        _json_answer(200, {"offset": 5}),
        _json_answer(200, {"publications": [], "epoch": "e"}),
        (204, {}, b""),
        _json_answer(429, {"detail": "Too many requests"}, **{"Retry-After": "3"}),
    ]
    with wc.WsguardClient(url, KEY) as client:
        assert client.publish("news:a", {"text": "hi"}) == 5
        assert client.history("news:a", limit=10, since=4) == wc.History([], "e")
        client.revoke("jo/hn")
        with pytest.raises(wc.RateLimited) as limited:
            client.channels()
    assert limited.value.retry_after == 3.0 and limited.value.detail == "Too many requests"
    publish, history, revoke, channels = handler.seen
    assert (publish["method"], publish["path"]) == ("POST", "/base/api/publish")
    assert publish["headers"]["authorization"] == f"Bearer {KEY}"
    assert publish["headers"]["content-type"] == "application/json"
    assert json.loads(publish["body"]) == {"channel": "news:a", "data": {"text": "hi"}}
    assert (history["method"], history["path"]) == (
        "GET",
        "/base/api/channels/news:a/history?limit=10&since=4",
    )
    assert (revoke["method"], revoke["path"], revoke["body"]) == (
        "POST",
        "/base/api/users/jo%2Fhn/revoke",
        b"",
    )
    assert (channels["method"], channels["path"]) == ("GET", "/base/api/channels")


def test_what_the_async_client_sends(recorder: tuple[str, type[Recorder]]) -> None:
    url, handler = recorder
    handler.answers += [
        _json_answer(200, {"offsets": {"a:1": 1, "a:2": None}}),
        _json_answer(200, {"users": ["johndoe"]}),
        _json_answer(401, {"detail": "Not authenticated"}, **{"WWW-Authenticate": "Bearer"}),
    ]

    async def calls() -> None:
        async with wc.AsyncWsguardClient(url, KEY) as client:
            assert await client.broadcast(["a:1", "a:2"], {"n": 1}) == {"a:1": 1, "a:2": None}
            assert await client.presence("room:x") == ["johndoe"]
            with pytest.raises(wc.Unauthorized):
                await client.disconnect("johndoe")

    asyncio.run(calls())
    broadcast, presence, disconnect = handler.seen
    assert json.loads(broadcast["body"]) == {"channels": ["a:1", "a:2"], "data": {"n": 1}}
    assert presence["path"] == "/base/api/channels/room:x/presence"
    assert (disconnect["method"], disconnect["path"]) == (
        "POST",
        "/base/api/users/johndoe/disconnect",
    )


# --- transport, timeouts, closing ------------------------------------------------------------


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never reads
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with (
            wc.WsguardClient(url, KEY, timeout=0.3) as client,
            pytest.raises(wc.TransportError, match="in time"),
        ):
            client.channels()
        assert time.monotonic() - started < 3

        async def async_call() -> None:
            async with wc.AsyncWsguardClient(url, KEY, timeout=0.3) as client:
                await client.channels()

        with pytest.raises(wc.TransportError, match="in time"):
            asyncio.run(async_call())


def test_the_async_client_reports_an_unreachable_server(closed_port: int) -> None:
    async def call() -> None:
        async with wc.AsyncWsguardClient(f"http://127.0.0.1:{closed_port}", KEY) as client:
            await client.history("news:a")

    with pytest.raises(wc.TransportError, match="cannot reach"):
        asyncio.run(call())


def test_closing_closes_only_the_clients_own_pool() -> None:
    with wc.WsguardClient("http://127.0.0.1:1", KEY) as client:
        own = client._http
    assert own.is_closed
    shared = httpx.Client()
    with wc.WsguardClient("http://127.0.0.1:1", KEY, http_client=shared):
        pass
    assert not shared.is_closed
    shared.close()

    async def async_pools() -> None:
        async with wc.AsyncWsguardClient("http://127.0.0.1:1", KEY) as client:
            own = client._http
        assert own.is_closed
        shared = httpx.AsyncClient()
        async with wc.AsyncWsguardClient("http://127.0.0.1:1", KEY, http_client=shared):
            pass
        assert not shared.is_closed
        await shared.aclose()

    asyncio.run(async_pools())
