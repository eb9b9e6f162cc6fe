"""wsguard as the real-time gateway of an existing FastAPI application: the example app
(examples/fastapi-app, under uvicorn) issues the tokens, wsguard admits them on `/connect`; the
app publishes through wsguard's server API with the Python client (clients/python); an outside
issuer (jwks_issuer.py) signs RS256 tokens and rotates its keys. Every part is a real process
(fixture `gateway` in conftest.py); the configuration is in `conftest.gateway_config`.

The tests of one module share one wsguard; the revocation test comes last, since it refuses
johndoe's tokens issued until then."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import httpx
import pytest
from wsclient import TRANSPORTS, Refused, Socket, connect, eventually, refusal

import wsguard_client as wc

# How far ahead of wsguard's clock an outside token's `iat` may be.
LEEWAY_S = 5


def run(coroutine):
    return asyncio.run(coroutine)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def client(gateway, key: str | None = None) -> wc.WsguardClient:
    return wc.WsguardClient(gateway.wsguard.url, key or gateway.api_key, timeout=10)


def check_publication(frame, channel: str, data, sender: str | None) -> int | None:
    """A `publication` frame as the contract says; its offset."""
    assert frame["type"] == "publication", frame
    assert (frame["channel"], frame["data"], frame["from"]) == (channel, data, sender), frame
    assert isinstance(frame["ts"], str) and frame["ts"], frame
    offset = frame["offset"]
    assert offset is None or (isinstance(offset, int) and offset > 0), frame
    return offset


def check_subscribed(frame, channel: str) -> int | None:
    assert frame["type"] == "subscribed", frame
    assert frame["channel"] == channel, frame
    offset = frame["offset"]
    assert offset is None or (isinstance(offset, int) and offset >= 0), frame
    # A channel without history (offset null) may have no epoch either.
    assert isinstance(frame.get("epoch"), str) or offset is None, frame
    return offset


def test_the_apps_token_opens_a_socket_by_every_transport(gateway):
    token = gateway.app.token("johndoe", "secret")

    async def flow():
        for transport in TRANSPORTS:
            async with connect(gateway.wsguard.connect_url, token, transport) as socket:
                assert socket.welcome["user"] == "johndoe", (transport, socket.welcome)
                assert isinstance(socket.welcome["exp"], int)
        # The app's page connects from the app's origin, which the config allows (README).
        origin = gateway.app.url
        async with connect(gateway.wsguard.connect_url, token, "subprotocol", origin) as socket:
            assert socket.welcome["user"] == "johndoe"
        with pytest.raises(Refused) as foreign:
            async with connect(gateway.wsguard.connect_url, token, origin="http://evil.example"):
                pass
        assert foreign.value.status == 403
        # A token the app did not sign is refused.
        forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
        assert (await refusal(gateway.wsguard.connect_url, forged)).status == 401
        assert (await refusal(gateway.wsguard.connect_url, forged, "query")).close_code == 1008

    run(flow())


def test_johndoe_may_subscribe_to_his_channel_only_and_never_publish_there(gateway):
    token = gateway.app.token("johndoe", "secret")

    async def flow():
        async with connect(gateway.wsguard.connect_url, token) as socket:
            check_subscribed(await socket.subscribe("user:johndoe"), "user:johndoe")
            refused = await socket.subscribe("user:janedoe")
            assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
            publish = {"type": "publish", "channel": "user:johndoe", "data": {"x": 1}, "ref": "p1"}
            refused = await socket.request(publish, "ack")
            assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
            # Still open, still subscribed: a refusal changes nothing.
            assert (await socket.subscribe("news:general"))["type"] == "subscribed"

    run(flow())


def test_a_notification_from_the_app_reaches_the_socket_and_the_history(gateway):
    john = gateway.app.token("johndoe", "secret")
    jane = gateway.app.token("janedoe", "secret2")  # the app's admin
    text, from_jane = unique("your report is ready"), unique("from the admin")

    def notify(username: str, token: str, text: str) -> httpx.Response:
        return httpx.post(
            f"{gateway.app.url}/notify/{username}",
            json={"text": text},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    async def flow():
        async with connect(gateway.wsguard.connect_url, john) as socket:
            check_subscribed(await socket.subscribe("user:johndoe"), "user:johndoe")
            sent = await asyncio.to_thread(notify, "johndoe", john, text)
            assert sent.status_code == 200, sent.text
            offset = check_publication(
                await socket.expect("publication"), "user:johndoe", {"text": text}, None
            )
            assert isinstance(offset, int) and sent.json() == {"offset": offset}

            by_admin = await asyncio.to_thread(notify, "johndoe", jane, from_jane)
            assert by_admin.status_code == 200, by_admin.text
            frame = await socket.expect("publication")
            assert check_publication(frame, "user:johndoe", {"text": from_jane}, None) == offset + 1

            # johndoe is no admin: he cannot notify janedoe, and nothing is published.
            refused = await asyncio.to_thread(notify, "janedoe", john, "spoofed")
            assert refused.status_code == 403
        return offset

    offset = run(flow())
    with client(gateway) as wsguard:
        history = wsguard.history("user:johndoe")
        assert history.epoch
        assert [(p.offset, p.data, p.from_user) for p in history.publications[-2:]] == [
            (offset, {"text": text}, None),
            (offset + 1, {"text": from_jane}, None),
        ]
        assert all(p.ts for p in history.publications)
        assert wsguard.history("user:janedoe").publications == []
        after = wsguard.history("user:johndoe", since=offset)
        assert [p.offset for p in after.publications] == [offset + 1]
        assert len(wsguard.history("user:johndoe", limit=1).publications) == 1


def test_namespaces_follow_their_rules_through_the_socket_and_the_api(gateway):
    token = gateway.app.token("johndoe", "secret")
    news, sports, lobby, live = "news:general", "news:sports", unique("room:lobby"), "live:scores"

    async def flow(socket: Socket):
        top = check_subscribed(await socket.subscribe(news), news)
        # news: anyone subscribes, only the API publishes.
        refused = await socket.request(
            {"type": "publish", "channel": news, "data": {"t": 1}, "ref": "n1"}, "ack"
        )
        assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
        with client(gateway) as wsguard:
            offset = await asyncio.to_thread(wsguard.publish, news, {"headline": "one"})
            assert offset == (top or 0) + 1
            frame = await socket.expect("publication")
            assert check_publication(frame, news, {"headline": "one"}, None) == offset

            offsets = await asyncio.to_thread(
                wsguard.broadcast, [news, sports], {"headline": "two"}
            )
            assert set(offsets) == {news, sports} and offsets[news] == offset + 1
            assert isinstance(offsets[sports], int)
            frame = await socket.expect("publication")
            assert check_publication(frame, news, {"headline": "two"}, None) == offset + 1

            # room: subscribers publish, with presence.
            check_subscribed(await socket.subscribe(lobby), lobby)
            ack = await socket.request(
                {"type": "publish", "channel": lobby, "data": {"msg": "hi"}, "ref": "c1"}, "ack"
            )
            assert ack["type"] == "ack" and ack["ref"] == "c1", ack
            frame = await socket.expect("publication")
            assert check_publication(frame, lobby, {"msg": "hi"}, "johndoe") == ack["offset"]
            assert await asyncio.to_thread(wsguard.presence, lobby) == ["johndoe"]
            listed = await asyncio.to_thread(wsguard.channels)
            assert wc.ChannelInfo(lobby, 1) in listed
            assert any(c.channel == news and c.subscribers >= 1 for c in listed)

            # live: no history, so no offsets.
            check_subscribed(await socket.subscribe(live), live)
            assert await asyncio.to_thread(wsguard.publish, live, {"score": "1-0"}) is None
            assert (
                check_publication(await socket.expect("publication"), live, {"score": "1-0"}, None)
                is None
            )

            # Unsubscribed: news publications stop; the next one to arrive is the lobby's. (The
            # socket's frames are handled in order: once `subscribed` answers the frame after
            # `unsubscribe`, the unsubscription is done.)
            await socket.send({"type": "unsubscribe", "channel": news})
            check_subscribed(await socket.subscribe("news:barrier"), "news:barrier")
            await asyncio.to_thread(wsguard.publish, news, {"headline": "unseen"})
            await asyncio.to_thread(wsguard.publish, lobby, {"msg": "from the api"})
            frame = await socket.expect("publication")
            check_publication(frame, lobby, {"msg": "from the api"}, None)

            history = await asyncio.to_thread(wsguard.history, news)
            headlines = [p.data for p in history.publications if p.offset > (top or 0)]
            assert headlines == [{"headline": "one"}, {"headline": "two"}, {"headline": "unseen"}]

        bad = await socket.request({"type": "subscribe"}, "subscribed")
        assert (bad["type"], bad["code"]) == ("error", "bad_request"), bad

    async def with_socket():
        async with connect(gateway.wsguard.connect_url, token) as socket:
            await flow(socket)

    run(with_socket())


def test_disconnect_closes_the_users_sockets_and_their_token_still_works(gateway):
    token = gateway.app.token("johndoe", "secret")

    async def flow():
        async with (
            connect(gateway.wsguard.connect_url, token) as first,
            connect(gateway.wsguard.connect_url, token, "subprotocol") as second,
        ):
            with client(gateway) as wsguard:
                await asyncio.to_thread(wsguard.disconnect, "johndoe")
            assert await first.close_code(timeout=2) == 4003
            assert await second.close_code(timeout=2) == 4003
        async with connect(gateway.wsguard.connect_url, token) as again:
            assert again.welcome["user"] == "johndoe"

    run(flow())


def test_jwks_issuer_tokens_are_admitted_across_key_rotations(gateway):
    issuer, url = gateway.issuer, gateway.wsguard.connect_url
    first = issuer.token("carol")

    async def admitted(token: str, user: str = "carol"):
        async with connect(url, token) as socket:
            assert socket.welcome["user"] == user
            check_subscribed(await socket.subscribe(f"user:{user}"), f"user:{user}")

    async def refused(token: str):
        assert (await refusal(url, token)).status == 401

    async def flow():
        await admitted(first["access_token"])
        # A new key, the old one still listed: both kinds of token open sockets.
        rotated = issuer.rotate()
        assert rotated["listed"] == [first["kid"], rotated["kid"]]
        second = issuer.token("carol")
        assert second["kid"] == rotated["kid"] != first["kid"]
        await eventually(lambda: admitted(second["access_token"]))
        await admitted(first["access_token"])
        # A new key alone: once wsguard has fetched the keys again (for the unknown kid), the
        # tokens of the keys no longer listed are refused.
        newest = issuer.rotate(drop_old=True)
        assert newest["listed"] == [newest["kid"]]
        third = issuer.token("dave")
        await eventually(lambda: admitted(third["access_token"], "dave"))
        await eventually(lambda: refused(second["access_token"]))
        await refused(first["access_token"])

    run(flow())


def test_jwks_issuer_tokens_need_its_signature_issuer_and_audience(gateway):
    issuer, url = gateway.issuer, gateway.wsguard.connect_url

    async def flow():
        for params in ({"forge": "1"}, {"aud": "another-service"}, {"iss": "http://evil.example/"}):
            token = issuer.token("carol", **params)["access_token"]
            assert (await refusal(url, token)).status == 401, params
            assert (await refusal(url, token, "auth_frame")).close_code == 1008, params

    run(flow())


def test_a_socket_closes_with_4001_when_its_outside_token_expires(gateway):
    token = gateway.issuer.token("erin", ttl="3")["access_token"]

    async def flow():
        async with connect(gateway.wsguard.connect_url, token) as socket:
            started = time.monotonic()
            assert await socket.close_code(timeout=8) == 4001
            assert time.monotonic() - started <= 6
        # Expired: refused (after wsguard's leeway of a few seconds at most).
        await asyncio.sleep(7)
        assert (await refusal(gateway.wsguard.connect_url, token)).status == 401

    run(flow())


def test_the_python_clients_errors(gateway):
    stranger = wc.WsguardClient(gateway.wsguard.url, "wsg_not-a-key", timeout=10)
    with stranger, pytest.raises(wc.Unauthorized) as unknown:
        stranger.channels()
    assert isinstance(unknown.value, wc.AuthError) and unknown.value.status == 401
    assert unknown.value.detail

    token = gateway.app.token("johndoe", "secret")

    async def flow():
        async with connect(gateway.wsguard.connect_url, token) as socket:
            with client(gateway, gateway.read_key) as reader:
                assert isinstance(reader.channels(), list)
                assert isinstance(reader.history("news:general"), wc.History)
                with pytest.raises(wc.Forbidden) as no_scope:
                    reader.publish("news:general", {"t": "no scope"})
                assert isinstance(no_scope.value, wc.AuthError) and no_scope.value.status == 403
                with pytest.raises(wc.Forbidden):
                    reader.revoke("johndoe")
                with pytest.raises(wc.Forbidden):
                    reader.disconnect("johndoe")
            # Nothing was done: johndoe's socket is open and his token admitted.
            check_subscribed(await socket.subscribe("user:johndoe"), "user:johndoe")

        with client(gateway) as wsguard, pytest.raises(wc.PayloadTooLarge) as too_big:
            wsguard.publish("news:general", {"blob": "x" * (1 << 20)})
        assert too_big.value.status == 413

    run(flow())

    # What the client maps, as the server sends it.
    api = f"{gateway.wsguard.url}/api"
    missing = httpx.get(f"{api}/channels", timeout=10)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    auth = {"Authorization": f"Bearer {gateway.api_key}"}
    for body in ({"channel": 5, "data": {}}, {"data": {}}, {"channel": "news:general"}):
        bad = httpx.post(f"{api}/publish", json=body, headers=auth, timeout=10)
        assert bad.status_code == 422 and isinstance(bad.json()["detail"], str), (body, bad.text)


def test_the_async_client_does_the_same(gateway):
    token = gateway.app.token("janedoe", "secret2")
    lobby = unique("room:async")

    async def flow():
        async with wc.AsyncWsguardClient(gateway.wsguard.url, gateway.api_key) as wsguard:
            async with connect(gateway.wsguard.connect_url, token) as socket:
                check_subscribed(await socket.subscribe(lobby), lobby)
                check_subscribed(await socket.subscribe("news:async"), "news:async")
                offset = await wsguard.publish("news:async", {"n": 1})
                assert isinstance(offset, int)
                frame = await socket.expect("publication")
                assert check_publication(frame, "news:async", {"n": 1}, None) == offset
                offsets = await wsguard.broadcast(["news:async", lobby], {"n": 2})
                assert offsets["news:async"] == offset + 1 and isinstance(offsets[lobby], int)
                assert await wsguard.presence(lobby) == ["janedoe"]
                assert wc.ChannelInfo(lobby, 1) in await wsguard.channels()
                history = await wsguard.history("news:async", since=offset)
                assert [(p.offset, p.data) for p in history.publications] == [
                    (offset + 1, {"n": 2})
                ]
                await wsguard.disconnect("janedoe")
                assert await socket.close_code(timeout=2) == 4003

            async def left():
                assert await wsguard.presence(lobby) == []

            await eventually(left)

        async with wc.AsyncWsguardClient(gateway.wsguard.url, "wsg_not-a-key") as stranger:
            with pytest.raises(wc.Unauthorized):
                await stranger.history("news:async")
        async with wc.AsyncWsguardClient(gateway.wsguard.url, gateway.read_key) as reader:
            with pytest.raises(wc.Forbidden):
                await reader.broadcast(["news:async"], {"n": 3})

    run(flow())


def test_revoking_johndoe_closes_his_socket_and_refuses_his_older_tokens(gateway):
    """Last in this module: it refuses every johndoe token issued until now."""
    old = gateway.app.token("johndoe", "secret")
    jane = gateway.app.token("janedoe", "secret2")
    url = gateway.wsguard.connect_url

    async def flow():
        async with connect(url, old) as john, connect(url, jane) as other:
            check_subscribed(await john.subscribe("user:johndoe"), "user:johndoe")
            with client(gateway) as wsguard:
                await asyncio.to_thread(wsguard.revoke, "johndoe")
            revoked_at = time.time()
            assert await john.close_code(timeout=2) == 4003
            # Only johndoe: janedoe's socket stays open.
            check_subscribed(await other.subscribe("user:janedoe"), "user:janedoe")

        assert (await refusal(url, old)).status == 401
        assert (await refusal(url, old, "subprotocol")).close_code == 1008
        # A token issued after the revocation: `iat` is in whole seconds (wait for the next one),
        # and an outside issuer's clock may run up to 5 s ahead (what wsguard's leeway admits), so
        # a token whose `iat` is within 5 s after the revocation may predate it and is refused.
        await asyncio.sleep(max(0.0, math.floor(revoked_at) + 1.1 + LEEWAY_S - time.time()))
        new = await asyncio.to_thread(gateway.app.token, "johndoe", "secret")
        async with connect(url, new) as again:
            assert again.welcome["user"] == "johndoe"
            check_subscribed(await again.subscribe("user:johndoe"), "user:johndoe")
        assert (await refusal(url, old)).status == 401
        async with connect(url, jane) as still:
            assert still.welcome["user"] == "janedoe"

    run(flow())
