"""The example app's documents page, as its browser would use it, with wsguard as the gateway: a
session cookie from the app's own login (no JWT in the browser) admits the socket through the
connect proxy, and the app's data decides at subscribe time who follows a document (the subscribe
proxy); notes published by the app reach the members following it."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from wsclient import connect


def session(app_url: str, username: str, password: str) -> httpx.Client:
    http = httpx.Client(base_url=app_url, timeout=10)
    answer = http.post("/session", data={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie, cookie
    return http


def test_members_follow_their_documents_by_session_cookie(gateway):
    john = session(gateway.app.url, "johndoe", "secret")
    listed = {doc["id"]: doc["member"] for doc in john.get("/documents.json").json()}
    assert listed == {"1": True, "2": False}
    cookie = f"session={john.cookies['session']}"

    async def flow():
        async with connect(gateway.wsguard.connect_url, "", "none", cookie=cookie) as socket:
            assert socket.welcome["user"] == "johndoe"
            followed = await socket.subscribe("doc:1")
            assert (followed["type"], followed["data"]) == ("subscribed", {"title": "Roadmap"})
            refused = await socket.subscribe("doc:2")
            assert (refused["code"], refused["app_code"]) == ("forbidden", 4031), refused

            note = john.post("/documents/1/notes", json={"text": "ship it"})
            assert note.status_code == 200, note.text
            publication = await socket.expect("publication")
            assert publication["data"] == {"text": "ship it", "by": "johndoe"}
            assert john.post("/documents/2/notes", json={"text": "x"}).status_code == 403

    asyncio.run(flow())


def test_no_session_no_socket(gateway):
    async def flow():
        headers = {"Cookie": "session=forged"}
        async with websockets.connect(
            gateway.wsguard.connect_url, additional_headers=headers
        ) as ws:
            # Not an auth frame: the connect proxy's refusal stands at once.
            await ws.send(json.dumps({"type": "ping"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    asyncio.run(flow())
    anonymous = httpx.get(f"{gateway.app.url}/documents.json", timeout=10)
    assert anonymous.status_code == 401


def test_logging_out_ends_the_session(gateway):
    jane = session(gateway.app.url, "janedoe", "secret2")
    assert jane.delete("/session").status_code == 204
    assert jane.get("/documents.json").status_code == 401
