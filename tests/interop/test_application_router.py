"""The application's side in Python, as a FastAPI developer writes it: `wsguard_client.router`
mounted in a real FastAPI app (uvicorn) answers a real wsguard's proxy calls with the app's own
functions, and `make_subscription_token` signs the subscription tokens; Centrifugo's Python SDK
(`centrifuge-python`) is the client, with the app's session cookie and no JWT at all."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import processes
import pytest
import uvicorn
from centrifuge import (
    Client,
    ClientEventHandler,
    DisconnectedContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from wsguard_client import (
    ConnectRequest,
    ConnectResult,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    RefreshResult,
    Refuse,
    RpcRequest,
    RpcResult,
    SubscribeRequest,
    SubscribeResult,
    make_subscription_token,
)
from wsguard_client.router import proxy_router

SESSIONS = {"s-john": "johndoe", "s-jane": "janedoe"}
MEMBERS = {"doc:1": {"johndoe"}, "doc:2": {"janedoe"}}


def application(calls: list[str]) -> FastAPI:
    """Sessions by cookie, documents by membership, publications stamped with their author."""

    def who(call: ConnectRequest, request: Request) -> ConnectResult:
        calls.append("connect")
        user = SESSIONS.get(request.cookies.get("session", ""))
        if user is None:
            raise Refuse(4401, "no session")
        return ConnectResult(user=user, expire_at=int(time.time()) + 2, data={"hello": user})

    def prolong(call: RefreshRequest, request: Request) -> RefreshResult:
        calls.append("refresh")
        return RefreshResult(expire_at=int(time.time()) + 3)

    async def may_follow(call: SubscribeRequest, request: Request) -> SubscribeResult:
        calls.append("subscribe")
        if call.user not in MEMBERS.get(call.channel, set()):
            raise Refuse(4031, "not a member")
        return SubscribeResult(data={"title": f"Document {call.channel}"})

    def stamp(call: PublishRequest, request: Request) -> PublishResult:
        calls.append("publish")
        return PublishResult(data={"text": call.data["text"], "by": call.user})

    def answer(call: RpcRequest, request: Request) -> RpcResult:
        calls.append("rpc")
        return RpcResult(data={"method": call.method, "user": call.user})

    app = FastAPI()
    router = proxy_router(
        connect=who, refresh=prolong, subscribe=may_follow, publish=stamp, rpc=answer
    )
    app.include_router(router, prefix="/rt")
    return app


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[str]]]:
    """The application (uvicorn, in a thread) and wsguard asking it: (wsguard's URL, the
    application's subscription-token secret, the calls the application got)."""
    calls: list[str] = []
    sock = processes.listening_socket()
    server = uvicorn.Server(uvicorn.Config(application(calls), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    app = f"http://127.0.0.1:{sock.getsockname()[1]}/rt"
    data = tmp_path_factory.mktemp("wsguard-router")
    secret = secrets.token_hex(32)
    secret_file = processes.private_file(data / "app.secret", secret)
    config = data / "wsguard.toml"
    config.write_text(
        f"""
[proxy]
connect = "{app}/connect"
refresh = "{app}/refresh"
rpc = "{app}/rpc"
forward_headers = ["Cookie"]

[[namespaces]]
name = "doc"
subscribe = "proxy"
subscribe_proxy = "{app}/subscribe"
publish = "proxy"
publish_proxy = "{app}/publish"

[[namespaces]]
name = "priv"
subscribe = "token"

[[trusted_issuers]]
issuer = "https://app.example/"
secret_file = "{secret_file}"
"""
    )
    with processes.wsguard(data, config, data / "serve.log") as wsguard:
        yield wsguard.url, secret, calls
    server.should_exit = True
    thread.join(timeout=10)


class Watched(SubscriptionEventHandler):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[SubscribedContext] = loop.create_future()
        self.unsubscribed: asyncio.Future[UnsubscribedContext] = loop.create_future()
        self.publications: asyncio.Queue[Any] = asyncio.Queue()

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        if not self.subscribed.done():
            self.subscribed.set_result(ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        if not self.unsubscribed.done():
            self.unsubscribed.set_result(ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.publications.put(ctx.pub.data)


def _client(base: str, session: str) -> Client:
    url = base.replace("http://", "ws://", 1) + "/connection/websocket"
    return Client(url, headers={"Cookie": f"session={session}"}, max_reconnect_delay=1.0)


def test_the_app_decides_through_its_router(setup: tuple[str, str, list[str]]) -> None:
    base, _secret, calls = setup

    async def scenario() -> None:
        john = _client(base, "s-john")
        await john.connect()
        await john.ready(timeout=10)

        mine, theirs = Watched(), Watched()
        doc = john.new_subscription("doc:1", events=mine)
        await doc.subscribe()
        async with asyncio.timeout(10):
            ctx = await mine.subscribed
        assert ctx.data == {"title": "Document doc:1"}
        await john.new_subscription("doc:2", events=theirs).subscribe()
        async with asyncio.timeout(10):
            refused = await theirs.unsubscribed
        assert (refused.code, refused.reason) == (4031, "not a member")

        await doc.publish({"text": "hello"})
        async with asyncio.timeout(10):
            assert await mine.publications.get() == {"text": "hello", "by": "johndoe"}
        answer = await john.rpc("whoami", {})
        assert answer.data == {"method": "whoami", "user": "johndoe"}

        # expire_at in 2 s, prolonged by 3 s each time: one connection throughout.
        await asyncio.sleep(4.5)
        assert calls.count("refresh") >= 1, calls
        assert calls.count("connect") == 1, calls
        assert john.state.value == "connected"
        await john.disconnect()

    asyncio.run(scenario())


def test_subscription_tokens_from_make_subscription_token(
    setup: tuple[str, str, list[str]],
) -> None:
    base, secret, _calls = setup

    async def scenario() -> None:
        jane = _client(base, "s-jane")
        await jane.connect()
        fetched: list[str] = []

        async def get_token(channel: str) -> str:
            fetched.append(channel)
            issuer = "https://app.example/"
            return make_subscription_token(secret, "janedoe", channel, 2, issuer=issuer)

        watched = Watched()
        sub = jane.new_subscription("priv:jane", events=watched, get_token=get_token)
        await sub.subscribe()
        async with asyncio.timeout(10):
            await watched.subscribed
        await asyncio.sleep(5)
        assert len(fetched) >= 3, fetched
        assert not watched.unsubscribed.done()

        # A token for another user is refused: the SDK's subscription ends with 103.
        stolen = make_subscription_token(
            secret, "johndoe", "priv:john", 60, issuer="https://app.example/"
        )
        refused = Watched()
        await jane.new_subscription("priv:john", events=refused, token=stolen).subscribe()
        async with asyncio.timeout(10):
            ended = await refused.unsubscribed
        assert ended.code == 103, ended
        await jane.disconnect()

    asyncio.run(scenario())


def test_no_session_is_refused_with_the_apps_code(setup: tuple[str, str, list[str]]) -> None:
    base, _secret, _calls = setup

    class Ended(ClientEventHandler):
        def __init__(self) -> None:
            self.disconnected: asyncio.Future[DisconnectedContext] = (
                asyncio.get_running_loop().create_future()
            )

        async def on_disconnected(self, ctx: DisconnectedContext) -> None:
            if not self.disconnected.done():
                self.disconnected.set_result(ctx)

    async def scenario() -> None:
        url = base.replace("http://", "ws://", 1) + "/connection/websocket"
        ended = Ended()
        stranger = Client(url, headers={"Cookie": "session=nobody"}, events=ended)
        await stranger.connect()
        async with asyncio.timeout(10):
            ctx = await ended.disconnected
        assert (ctx.code, ctx.reason) == (4401, "no session")
        await stranger.disconnect()

    asyncio.run(scenario())


def test_router_refuses_what_is_not_a_proxy_call() -> None:
    client = TestClient(application([]))
    assert client.post("/rt/subscribe", content=b"[1, 2]").status_code == 400
    assert client.post("/rt/subscribe", json={"user": 7}).status_code == 400
    answer = client.post(
        "/rt/subscribe",
        json={
            "client": "c",
            "transport": "websocket",
            "protocol": "json",
            "encoding": "json",
            "user": "janedoe",
            "channel": "doc:1",
        },
    )
    assert answer.json() == {"error": {"code": 4031, "message": "not a member"}}
