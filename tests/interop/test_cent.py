"""Centrifugo's own Python API client, `cent` from PyPI, unchanged, against wsguard's
`/centrifugo/api`: every method through its sync client, and once through its async one. A real
wsguard (demo users, a config with namespaces) and real `/connect` sockets that receive what is
published. The tests of the module share one wsguard; the one that invalidates janedoe's tokens
comes last."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import processes
import pytest
import requests
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentTransportError,
    CentUnauthorizedError,
    ChannelsRequest,
    Client,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    InvalidateUserTokensRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from wsclient import Socket, connect

CONFIG = """
[[namespaces]]
name = "news"
subscribe = "any"
presence = true

[[namespaces]]
name = "live"
subscribe = "any"
history_size = 0
"""


@dataclass
class Centrifugo:
    wsguard: processes.Wsguard
    #: Scopes publish, disconnect, read.
    key: str
    #: Scope read only.
    read_key: str

    @property
    def api_url(self) -> str:
        return f"{self.wsguard.url}/centrifugo/api"

    def client(self, key: str | None = None) -> Client:
        return Client(self.api_url, key or self.key, timeout=10)

    def token(self, user: str, password: str) -> str:
        form = {"username": user, "password": password}
        response = requests.post(f"{self.wsguard.url}/token", data=form, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def centrifugo(tmp_path_factory) -> Iterator[Centrifugo]:
    tmp = tmp_path_factory.mktemp("cent")
    config = tmp / "wsguard.toml"
    config.write_text(CONFIG)
    data = tmp / "data"
    demo = [processes.BIN, "demo", "--data-dir", str(data)]
    subprocess.run(demo, check=True, capture_output=True, timeout=60)
    with processes.wsguard(data, config, tmp / "wsguard.log") as wsguard:
        found = Centrifugo(
            wsguard,
            wsguard.apikey("backend", "publish,disconnect,read"),
            wsguard.apikey("dashboard", "read"),
        )
        # A key the CLI added reaches the server at its next reread of the key table.
        deadline = time.monotonic() + 5
        for key in (found.key, found.read_key):
            while True:
                try:
                    found.client(key).info(InfoRequest())
                    break
                except CentUnauthorizedError:
                    assert time.monotonic() < deadline, "the keys never reached the server"
                    time.sleep(0.1)
        yield found


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def subscriber(centrifugo: Centrifugo, channel: str, user: str = "johndoe"):
    password = {"johndoe": "secret", "janedoe": "secret2"}[user]
    url = centrifugo.wsguard.connect_url
    async with connect(url, centrifugo.token(user, password)) as socket:
        subscribed = await socket.subscribe(channel)
        assert subscribed["type"] == "subscribed", subscribed
        yield socket


async def publication(socket: Socket) -> dict:
    return await socket.expect("publication")


def test_publish_reaches_a_subscriber_and_is_in_history(centrifugo):
    client = centrifugo.client()
    channel = unique("news:eu")

    async def scenario():
        async with subscriber(centrifugo, channel) as socket:
            first = client.publish(PublishRequest(channel=channel, data={"n": 1}))
            assert first.offset == 1 and len(first.epoch) == 16, first
            frame = await publication(socket)
            assert (frame["offset"], frame["data"], frame["from"]) == (1, {"n": 1}, None)
            second = client.publish(PublishRequest(channel=channel, data={"n": 2}))
            assert (second.offset, second.epoch) == (2, first.epoch)
            assert (await publication(socket))["offset"] == 2
            return first.epoch

    epoch = asyncio.run(scenario())
    history = client.history(HistoryRequest(channel=channel, limit=10))
    assert [(p.offset, p.data) for p in history.publications] == [(1, {"n": 1}), (2, {"n": 2})]
    assert (history.offset, history.epoch) == (2, epoch)
    position = client.history(HistoryRequest(channel=channel))
    assert (position.publications, position.offset) == ([], 2), "no limit: the position alone"
    newest = client.history(HistoryRequest(channel=channel, limit=1, reverse=True))
    assert [p.offset for p in newest.publications] == [2]
    since = StreamPosition(offset=1, epoch=epoch)
    after = client.history(HistoryRequest(channel=channel, limit=10, since=since))
    assert [p.offset for p in after.publications] == [2]
    with pytest.raises(CentApiResponseError) as stale:
        client.history(HistoryRequest(channel=channel, limit=1, since=StreamPosition(offset=1)))
    assert stale.value.code == 112, "another epoch: unrecoverable position"

    # A namespace without history: published, not numbered; history is not available there.
    assert client.publish(PublishRequest(channel="live:feed", data=1)).offset == 0
    with pytest.raises(CentApiResponseError) as off:
        client.history(HistoryRequest(channel="live:feed", limit=1))
    assert off.value.code == 108


def test_broadcast_answers_each_channel(centrifugo):
    client = centrifugo.client()
    good = unique("news:b")
    result = client.broadcast(BroadcastRequest(channels=[good, "nope:x", "live:b"], data={"b": 1}))
    replies = result.responses
    assert replies[0].error is None and replies[0].result.offset == 1, replies
    assert replies[1].error is not None and replies[1].error.code == 102, replies
    assert replies[2].error is None and replies[2].result.offset == 0, replies


def test_presence_channels_and_info(centrifugo):
    client = centrifugo.client(centrifugo.read_key)
    channel = unique("news:p")

    async def scenario():
        async with subscriber(centrifugo, channel), subscriber(centrifugo, channel, "janedoe"):
            presence = client.presence(PresenceRequest(channel=channel)).presence
            assert {k: (v.user, v.client) for k, v in presence.items()} == {
                "janedoe": ("janedoe", "janedoe"),
                "johndoe": ("johndoe", "johndoe"),
            }
            stats = client.presence_stats(PresenceStatsRequest(channel=channel))
            assert (stats.num_clients, stats.num_users) == (2, 2)
            channels = client.channels(ChannelsRequest(pattern="news:p-*")).channels
            assert {name: info.num_clients for name, info in channels.items()} == {channel: 2}
            node = client.info(InfoRequest()).nodes[0]
            assert node.uid and node.num_clients >= 2 and node.num_channels >= 1, node

    asyncio.run(scenario())
    with pytest.raises(CentApiResponseError) as off:
        client.presence(PresenceRequest(channel="live:feed"))
    assert off.value.code == 108, "presence is off in that namespace"


def test_history_remove_keeps_the_position(centrifugo):
    client = centrifugo.client()
    channel = unique("news:r")
    for n in range(3):
        client.publish(PublishRequest(channel=channel, data=n))
    client.history_remove(HistoryRemoveRequest(channel=channel))
    history = client.history(HistoryRequest(channel=channel, limit=10))
    assert (history.publications, history.offset) == ([], 3)
    assert client.publish(PublishRequest(channel=channel, data=3)).offset == 4


def test_batch_runs_commands_in_order(centrifugo):
    client = centrifugo.client()
    channel = unique("news:batch")
    commands = [
        PublishRequest(channel=channel, data=1),
        PublishRequest(channel=channel, data=2),
        HistoryRequest(channel=channel, limit=10),
    ]
    replies = client.batch(BatchRequest(requests=commands, parallel=True)).replies
    assert isinstance(replies[0], PublishResult) and replies[1].offset == 2, replies
    assert [p.data for p in replies[2].publications] == [1, 2]


def test_what_wsguard_cannot_do_is_not_available(centrifugo):
    client = centrifugo.client()
    calls = [
        lambda: client.subscribe(SubscribeRequest(user="johndoe", channel="news:x")),
        lambda: client.unsubscribe(UnsubscribeRequest(user="johndoe", channel="news:x")),
        lambda: client.refresh(RefreshRequest(user="johndoe", expired=True)),
        lambda: client.publish(PublishRequest(channel="news:x", data=1, idempotency_key="k")),
    ]
    for call in calls:
        with pytest.raises(CentApiResponseError) as refused:
            call()
        assert refused.value.code == 108, refused.value
        assert refused.value.message.startswith("not available in wsguard"), refused.value


def test_refusals_reach_cent_as_its_errors(centrifugo):
    with pytest.raises(CentUnauthorizedError):
        Client(centrifugo.api_url, "wsg_not-a-key").info(InfoRequest())
    with pytest.raises(CentApiResponseError) as denied:
        centrifugo.client(centrifugo.read_key).publish(PublishRequest(channel="news:x", data=1))
    assert denied.value.code == 103
    with pytest.raises(CentApiResponseError) as unknown:
        centrifugo.client().publish(PublishRequest(channel="nope:x", data=1))
    assert unknown.value.code == 102
    with pytest.raises(CentTransportError) as missing:
        Client(f"{centrifugo.wsguard.url}/centrifugo/api/nope", centrifugo.key).info(InfoRequest())
    assert missing.value.status_code == 404


def test_async_client_publishes_and_reads(centrifugo):
    channel = unique("news:async")

    async def scenario():
        async with AsyncClient(centrifugo.api_url, centrifugo.key, timeout=10) as client:
            async with subscriber(centrifugo, channel) as socket:
                published = await client.publish(PublishRequest(channel=channel, data={"a": 1}))
                assert published.offset == 1
                assert (await publication(socket))["data"] == {"a": 1}
            history = await client.history(HistoryRequest(channel=channel, limit=5))
            assert [p.data for p in history.publications] == [{"a": 1}]

    asyncio.run(scenario())


def test_disconnect_then_invalidate_user_tokens(centrifugo):
    client = centrifugo.client()

    async def scenario():
        token = centrifugo.token("janedoe", "secret2")
        url = centrifugo.wsguard.connect_url
        async with connect(url, token) as socket:
            client.disconnect(DisconnectRequest(user="janedoe"))
            assert await socket.close_code() == 4003
        async with connect(url, token) as socket:  # nothing was revoked
            client.invalidate_user_tokens(InvalidateUserTokensRequest(user="janedoe"))
            assert await socket.close_code() == 4003
        me = requests.get(
            f"{centrifugo.wsguard.url}/users/me",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert me.status_code == 401, "the token is invalidated"

    asyncio.run(scenario())
