"""Clients from another ecosystem, unchanged, against wsguard: requests-oauthlib's password
grant (LegacyApplicationClient) and the source documents' WebSocket flows with the `websockets`
library."""

import asyncio
import json
import os

import pytest
import requests
import websockets
from oauthlib.oauth2 import LegacyApplicationClient
from requests_oauthlib import OAuth2Session

# The test server speaks plain HTTP on loopback; oauthlib refuses that unless told.
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


def test_requests_oauthlib_password_grant_and_refresh(server):
    session = OAuth2Session(client=LegacyApplicationClient(client_id="wsguard"))
    token = session.fetch_token(token_url=f"{server}/token", username="johndoe", password="secret")
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 900
    me = session.get(f"{server}/users/me")
    assert me.status_code == 200
    assert me.json() == {
        "username": "johndoe",
        "email": "johndoe@example.com",
        "full_name": "John Doe",
        "disabled": False,
    }

    refreshed = session.refresh_token(f"{server}/token")
    assert refreshed["access_token"] != token["access_token"]
    assert session.get(f"{server}/items/").json() == [{"item_id": "Foo", "owner": "johndoe"}]


def test_requests_oauthlib_sees_bad_credentials(server):
    session = OAuth2Session(client=LegacyApplicationClient(client_id="wsguard"))
    with pytest.raises(Exception) as failure:
        session.fetch_token(token_url=f"{server}/token", username="johndoe", password="wrong")
    assert "invalid_grant" in repr(failure.value) or "Incorrect" in repr(failure.value)


def access_token(server):
    response = requests.post(f"{server}/token", data={"username": "johndoe", "password": "secret"})
    response.raise_for_status()
    return response.json()["access_token"]


def test_websockets_secured_ws_with_the_bearer_header(server):
    token = access_token(server)
    ws_base = server.replace("http://", "ws://")

    async def flow():
        async with websockets.connect(
            f"{ws_base}/secured-ws", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            assert await ws.recv() == "Welcome johndoe!"
            await ws.send("hi from python")
            assert await ws.recv() == "You wrote: hi from python"

        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(f"{ws_base}/secured-ws"):
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(flow())


def test_websockets_query_token(server):
    token = access_token(server)
    ws_base = server.replace("http://", "ws://")

    async def flow():
        async with websockets.connect(f"{ws_base}/ws?token={token}") as ws:
            assert await ws.recv() == "Successfully Login!"
            claims = json.loads(await ws.recv())
            assert claims["sub"] == "johndoe"
            await ws.send("echo")
            assert await ws.recv() == "You wrote: echo"

        async with websockets.connect(f"{ws_base}/ws?token=garbage") as ws:
            assert await ws.recv() == "malformed token"
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1008

    asyncio.run(flow())
