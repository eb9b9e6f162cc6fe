"""The documents page: the app's own sessions (a cookie, no JWT in the browser) and its own data
decide who follows which document, at the moment of asking, through wsguard's proxies:

- `POST /session` logs in with a password and sets an HttpOnly session cookie; `DELETE /session`
  logs out.
- `/rt/connect`: wsguard asks who a socket without a token is; the session cookie, which wsguard
  forwards, names the user. `/rt/subscribe`: wsguard asks whether that user may follow
  `doc:<id>`; only the document's members may.
- `POST /documents/{id}/notes` publishes a note to `doc:<id>` through wsguard's server API, for
  members only: every member following the document sees it at once.

In production the `/rt/` endpoints answer wsguard only: keep them off the public network (bind
the app to a private address for wsguard, or filter `/rt/` at the reverse proxy).
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Cookie, Form, HTTPException, Request, Response
from pydantic import BaseModel, Field
from users import authenticate_user, fake_users_db

from wsguard_client import (
    AsyncWsguardClient,
    ConnectRequest,
    ConnectResult,
    Refuse,
    SubscribeRequest,
    SubscribeResult,
    WsguardError,
)
from wsguard_client.router import proxy_router

#: How long a session lasts; wsguard's connection with it ends then too (`expire_at`).
SESSION_SECONDS = 8 * 3600

# The app's own data: who may read each document.
DOCUMENTS = {
    "1": {"title": "Roadmap", "members": {"johndoe", "janedoe"}},
    "2": {"title": "Salaries", "members": {"janedoe"}},
}

# Session id → (username, expiry). In memory: a real app keeps them in its database or Redis.
sessions: dict[str, tuple[str, int]] = {}


class Document(BaseModel):
    id: str
    title: str
    member: bool


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


def session_user(session: str | None) -> str | None:
    entry = sessions.get(session or "")
    if entry is None or entry[1] <= time.time():
        return None
    return entry[0]


def member_of(user: str, channel: str) -> bool:
    namespace, _, doc_id = channel.partition(":")
    document = DOCUMENTS.get(doc_id)
    return namespace == "doc" and document is not None and user in document["members"]


router = APIRouter()


@router.post("/session")
async def log_in(
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    request: Request,
    response: Response,
) -> dict[str, str]:
    user = authenticate_user(fake_users_db, username, password)
    if user is None or user.disabled:
        raise HTTPException(status_code=401, detail="Incorrect username or password")
    session = secrets.token_urlsafe(32)
    sessions[session] = (user.username, int(time.time()) + SESSION_SECONDS)
    # HttpOnly: no script reads it; SameSite=Lax: other sites' requests do not carry it.
    response.set_cookie(
        "session",
        session,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return {"username": user.username}


@router.delete("/session", status_code=204)
async def log_out(response: Response, session: Annotated[str | None, Cookie()] = None) -> None:
    sessions.pop(session or "", None)
    response.delete_cookie("session")


@router.get("/documents.json")
async def documents(session: Annotated[str | None, Cookie()] = None) -> list[Document]:
    user = session_user(session)
    if user is None:
        raise HTTPException(status_code=401, detail="Log in first")
    return [
        Document(id=doc_id, title=str(doc["title"]), member=user in doc["members"])
        for doc_id, doc in DOCUMENTS.items()
    ]


@router.post("/documents/{doc_id}/notes")
async def add_note(
    doc_id: str,
    note: Note,
    request: Request,
    session: Annotated[str | None, Cookie()] = None,
) -> dict[str, int | None]:
    user = session_user(session)
    if user is None:
        raise HTTPException(status_code=401, detail="Log in first")
    if not member_of(user, f"doc:{doc_id}"):
        raise HTTPException(status_code=403, detail="Not a member of this document")
    wsguard: AsyncWsguardClient = request.app.state.wsguard
    try:
        offset = await wsguard.publish(f"doc:{doc_id}", {"text": note.text, "by": user})
    except WsguardError as e:
        raise HTTPException(status_code=502, detail="Could not share the note") from e
    return {"offset": offset}


# --- wsguard's questions -------------------------------------------------------------------


def who_is(call: ConnectRequest, request: Request) -> ConnectResult:
    """The user of the session cookie wsguard forwarded, until the session ends."""
    entry = sessions.get(request.cookies.get("session", ""))
    if entry is None or entry[1] <= time.time():
        raise Refuse(4401, "no session: log in")
    return ConnectResult(user=entry[0], expire_at=entry[1])


def may_follow(call: SubscribeRequest, request: Request) -> SubscribeResult:
    """Only a document's members follow it, by the app's data as it is now."""
    if not member_of(call.user, call.channel):
        raise Refuse(4031, "not a member of this document")
    document = DOCUMENTS[call.channel.partition(":")[2]]
    return SubscribeResult(data={"title": document["title"]})


wsguard_router = proxy_router(connect=who_is, subscribe=may_follow)
