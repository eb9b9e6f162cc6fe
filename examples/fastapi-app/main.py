"""The FastAPI tutorial's application ("OAuth2 with Password (and hashing), Bearer with JWT
tokens"), with wsguard as its real-time gateway:

- `/token`, `/users/me/`, `/users/me/items/`: as the tutorial teaches (OAuth2PasswordBearer, a
  fake users database with argon2 hashes, HS256 JWTs with `sub` and `exp`; plus `iat`, which
  wsguard's revocation compares with);
- `/`: a page that logs in, connects straight to wsguard with the app's token and shows what
  arrives on the user's personal channel `user:<username>`;
- `POST /notify/{username}`: publishes `{"text": …}` to that channel through wsguard's server API
  (the Python client, with the app's own API key);
- `/documents`: a page on the app's session cookie (no JWT in the browser), where only a
  document's members follow it, decided by the app's data through wsguard's proxies
  (`documents.py`).

Run it beside wsguard: see README.md. Settings come from the environment only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import documents
import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi.staticfiles import StaticFiles
from jwt.exceptions import InvalidTokenError
from pydantic import BaseModel, Field
from users import User, authenticate_user, fake_users_db, get_user

from wsguard_client import AsyncWsguardClient, RateLimited, WsguardError

log = logging.getLogger("example-app")

ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 30
STATIC = Path(__file__).parent / "static"
# wsguard's JavaScript client, from the checkout this example lives in.
JS_CLIENT = Path(__file__).resolve().parent.parent.parent / "clients" / "js"
# The tutorial's SECRET_KEY is public: anyone could sign tokens with it (wsguard refuses it too).
PUBLISHED_SECRET = "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7"


class Settings(BaseModel):
    secret_key: str
    wsguard_url: str  # the server API, from this process
    wsguard_public_url: str  # the socket endpoint, from the browser


def settings_from_env() -> Settings:
    """Refuses to start without a secret of its own: no built-in one, ever."""
    secret = os.environ.get("SECRET_KEY", "").strip()
    if not secret:
        raise SystemExit("SECRET_KEY is not set: generate one with `openssl rand -hex 32`")
    if len(secret) < 32:
        raise SystemExit("SECRET_KEY is shorter than 32 characters: use `openssl rand -hex 32`")
    if secret.lower() == PUBLISHED_SECRET:
        raise SystemExit(
            "SECRET_KEY is the tutorial's published example: use `openssl rand -hex 32`"
        )
    for name in ("WSGUARD_URL", "WSGUARD_API_KEY"):
        if not os.environ.get(name, "").strip():
            raise SystemExit(f"{name} is not set (see README.md: wsguard apikey add)")
    api = os.environ["WSGUARD_URL"].strip().rstrip("/")
    public = os.environ.get("WSGUARD_PUBLIC_URL", "").strip()
    if not public:  # wsguard's own address, as a socket URL
        public = api.replace("http", "ws", 1) + "/connect"
    if urlsplit(public).scheme not in ("ws", "wss"):
        raise SystemExit("WSGUARD_PUBLIC_URL must be a ws:// or wss:// URL")
    return Settings(secret_key=secret, wsguard_url=api, wsguard_public_url=public)


settings = settings_from_env()


class Token(BaseModel):
    access_token: str
    token_type: str


class Notification(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class Delivered(BaseModel):
    #: The publication's offset in `user:<username>` (None if wsguard keeps no history there).
    offset: int | None


class PublicConfig(BaseModel):
    wsguard_url: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client (one connection pool) for the process; URL and key from WSGUARD_URL and
    # WSGUARD_API_KEY.
    async with AsyncWsguardClient(settings.wsguard_url, timeout=5) as wsguard:
        app.state.wsguard = wsguard
        yield


app = FastAPI(lifespan=lifespan)
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")


@app.middleware("http")
async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    wsguard = urlsplit(settings.wsguard_public_url)
    # Scripts from this server only (no inline script); sockets to wsguard only.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self' {wsguard.scheme}://{wsguard.netloc}; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def create_access_token(data: dict[str, object], expires_delta: timedelta) -> str:
    now = datetime.now(timezone.utc)
    # `iat`: wsguard's revoke refuses the user's tokens issued before it, and admits later ones.
    to_encode = {**data, "iat": now, "exp": now + expires_delta}
    return jwt.encode(to_encode, settings.secret_key, algorithm=ALGORITHM)


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> User:
    credentials_exception = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(token, settings.secret_key, algorithms=[ALGORITHM])
    except InvalidTokenError:
        raise credentials_exception from None
    username = payload.get("sub")
    if not isinstance(username, str):
        raise credentials_exception
    user = get_user(fake_users_db, username)
    if user is None:
        raise credentials_exception
    return user


async def get_current_active_user(
    current_user: Annotated[User, Depends(get_current_user)],
) -> User:
    if current_user.disabled:
        raise HTTPException(status_code=400, detail="Inactive user")
    return current_user


@app.post("/token")
async def login_for_access_token(
    form_data: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    user = authenticate_user(fake_users_db, form_data.username, form_data.password)
    if not user:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if user.disabled:
        raise HTTPException(status_code=400, detail="Inactive user")
    access_token_expires = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    access_token = create_access_token(
        data={"sub": user.username}, expires_delta=access_token_expires
    )
    return Token(access_token=access_token, token_type="bearer")


@app.get("/users/me/")
async def read_users_me(current_user: Annotated[User, Depends(get_current_active_user)]) -> User:
    return current_user


@app.get("/users/me/items/")
async def read_own_items(
    current_user: Annotated[User, Depends(get_current_active_user)],
) -> list[dict[str, str]]:
    return [{"item_id": "Foo", "owner": current_user.username}]


@app.post("/notify/{username}")
async def notify(
    username: str,
    notification: Notification,
    current_user: Annotated[User, Depends(get_current_active_user)],
    request: Request,
    response: Response,
) -> Delivered:
    """Publishes `{"text": …}` to `user:<username>`. A user may notify themselves (the page's
    "send me a test notification"); only an admin may notify someone else: the message arrives
    as the application's own, so letting any user send it would let them impersonate the app."""
    if username != current_user.username and not current_user.admin:
        raise HTTPException(status_code=403, detail="Only an admin may notify another user")
    if get_user(fake_users_db, username) is None:
        raise HTTPException(status_code=404, detail="Unknown user")
    wsguard: AsyncWsguardClient = request.app.state.wsguard
    try:
        offset = await wsguard.publish(f"user:{username}", {"text": notification.text})
    except RateLimited as e:
        retry = {"Retry-After": str(int(e.retry_after))} if e.retry_after is not None else None
        raise HTTPException(status_code=429, detail="Too many notifications", headers=retry) from e
    except WsguardError as e:  # logged here, never shown: it may name the gateway's internals
        log.error("publishing to user:%s failed: %s", username, e)
        raise HTTPException(status_code=502, detail="Could not deliver the notification") from e
    return Delivered(offset=offset)


@app.get("/config.json")
async def public_config() -> PublicConfig:
    """What the page needs to know: where wsguard's sockets are."""
    return PublicConfig(wsguard_url=settings.wsguard_public_url)


@app.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@app.get("/documents", include_in_schema=False)
async def documents_page() -> FileResponse:
    return FileResponse(STATIC / "documents.html", headers={"Cache-Control": "no-store"})


app.include_router(documents.router)
app.include_router(documents.wsguard_router, prefix="/rt")
app.mount("/static", StaticFiles(directory=STATIC), name="static")
app.mount("/js", StaticFiles(directory=JS_CLIENT, check_dir=False), name="js")
