"""Centrifugo's Python SDK (`centrifuge-python` from PyPI, pinned in requirements.txt), unchanged,
against a real wsguard at /connection/websocket: a wsguard token, publications from the server API
and from the SDK, presence, history, a refresh of a short token in band, and revocation."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import processes
import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    DisconnectedContext,
    PublicationContext,
    SubscriptionEventHandler,
)

CONFIG = """
[[namespaces]]
name = "feed"
subscribe = "any"
publish = "subscribers"
presence = true
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[processes.Wsguard, str]]:
    """wsguard with the demo users, 3 s access tokens, and an API key: (server, key)."""
    data = tmp_path_factory.mktemp("wsguard-sdk")
    config = data / "wsguard.toml"
    config.write_text(CONFIG)
    subprocess.run(
        [processes.BIN, "--config", str(config), "demo", "--data-dir", str(data)],
        check=True,
        capture_output=True,
    )
    # The key before the start: a running node rereads its keys every second.
    key = processes.Wsguard("", data, config).apikey("sdk", "publish,disconnect,read")
    with _serve(data, config, ["--access-ttl", "3s"]) as server:
        yield server, key


def _serve(data: Path, config: Path, extra: list[str]) -> Any:
    argv = [processes.BIN, "--config", str(config), "serve", "--bind", "127.0.0.1:0"]
    argv += ["--data-dir", str(data), *extra]

    class Serving:
        def __enter__(self) -> processes.Wsguard:
            self.running = processes.running(argv, data / "serve.log")
            proc = self.running.__enter__()
            url = processes.first_line(proc, data / "serve.log", "wsguard listening on ")
            return processes.Wsguard(url, data, config)

        def __exit__(self, *exc: object) -> None:
            self.running.__exit__(*exc)

    return Serving()


def _login(base: str, username: str, password: str) -> dict[str, str]:
    response = httpx.post(f"{base}/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def _websocket(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/connection/websocket"


class Received(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.data: list[Any] = []
        self.arrived = asyncio.Event()

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.data.append(ctx.pub.data)
        self.arrived.set()


class Ended(ClientEventHandler):
    def __init__(self) -> None:
        self.disconnected: asyncio.Future[DisconnectedContext] = (
            asyncio.get_running_loop().create_future()
        )

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(ctx)


def test_publications_presence_history_and_refresh(node: tuple[processes.Wsguard, str]) -> None:
    server, key = node

    async def scenario() -> None:
        refresh_token = _login(server.url, "johndoe", "secret")["refresh_token"]
        issued: list[str] = []

        async def get_token() -> str:
            nonlocal refresh_token
            async with httpx.AsyncClient() as http:
                answer = await http.post(
                    f"{server.url}/refresh", headers={"authorization": f"Bearer {refresh_token}"}
                )
            assert answer.status_code == 200, answer.text
            pair = answer.json()
            refresh_token = pair["refresh_token"]
            issued.append(pair["access_token"])
            return str(pair["access_token"])

        client = Client(_websocket(server.url), get_token=get_token, max_reconnect_delay=1.0)
        received = Received()
        sub = client.new_subscription("feed:py", events=received)
        await client.connect()
        await sub.subscribe()
        await sub.ready(timeout=10)

        # From the server API, and from the SDK itself.
        published = httpx.post(
            f"{server.url}/api/publish",
            json={"channel": "feed:py", "data": {"n": 1}},
            headers={"authorization": f"Bearer {key}"},
        )
        assert published.status_code == 200, published.text
        await sub.publish({"n": 2})
        async with asyncio.timeout(10):
            while len(received.data) < 2:
                received.arrived.clear()
                await received.arrived.wait()
        assert received.data == [{"n": 1}, {"n": 2}]

        presence = await sub.presence()
        assert [info.user for info in presence.clients.values()] == ["johndoe"]
        stats = await sub.presence_stats()
        assert stats.num_users == 1
        history = await sub.history(limit=10)
        assert [p.data for p in history.publications] == [{"n": 1}, {"n": 2}]
        assert history.offset == 2 and history.epoch

        # 3 s tokens: the SDK renews them in band on the same connection.
        await asyncio.sleep(7)
        assert len(issued) >= 3, issued
        assert client.state.value == "connected"
        await client.disconnect()

    asyncio.run(scenario())


def test_revocation_disconnects_for_good(node: tuple[processes.Wsguard, str]) -> None:
    server, key = node

    async def scenario() -> None:
        token = _login(server.url, "janedoe", "secret2")["access_token"]
        ended = Ended()
        client = Client(_websocket(server.url), token=token, events=ended)
        await client.connect()
        await client.ready(timeout=10)
        revoked = httpx.post(
            f"{server.url}/api/users/janedoe/revoke", headers={"authorization": f"Bearer {key}"}
        )
        assert revoked.status_code == 204, revoked.text
        async with asyncio.timeout(10):
            ctx = await ended.disconnected
        assert ctx.code == 3503, ctx
        await client.disconnect()

    asyncio.run(scenario())
