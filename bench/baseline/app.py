"""The benchmark's FastAPI baseline: the app from the FastAPI tutorials that wsguard re-implements.

This is what a user would run without wsguard, assembled from the tutorials into one app:

* the OAuth2 password flow with bcrypt (passlib) and HS256 JWTs (``sub`` and ``exp`` claims):
  ``POST /token``, ``GET /users/me``, ``GET /items/``;
* ``/secured-ws``: a WebSocket authenticated by an ``Authorization: Bearer`` header on the
  handshake (a WebSocket flavour of ``OAuth2PasswordBearer``), greeting and then echoing;
* ``/ws?token=...``: a WebSocket that accepts first, then decodes the query's token and says
  "Successfully Login!" with the decoded claims (or the decoding error), then echoes.

Demo users: johndoe/secret, janedoe/secret2, alice/secret3 (disabled).

Its flaws are deliberate and must stay, or the benchmark stops measuring what users would
otherwise run: the bcrypt check runs inside ``async def`` on the event loop (one login blocks
every other request and socket for a whole hash), the signing secret is hard-coded, a login for an
unknown user skips the hash (a timing difference), and ``/ws`` accepts before checking the token
and does not look the user up. Keep it faithful to the tutorials; do not fix it.

Run it: ``uvicorn app:app --port 8100 --log-level warning`` from this folder (see README.md).
"""
from datetime import datetime, timedelta, timezone
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, Query, WebSocket, WebSocketException, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jwt.exceptions import InvalidTokenError
from passlib.context import CryptContext
from pydantic import BaseModel

# --- settings, as the tutorials have them (the secret in the source: deliberate) -------------

SECRET_KEY = "your_secret_key"
ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 30
DEFAULT_EXPIRY = timedelta(minutes=15)

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")


# --- models ----------------------------------------------------------------------------------

class Token(BaseModel):
    access_token: str
    token_type: str


class User(BaseModel):
    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None


class UserInDB(User):
    hashed_password: str


# --- the users: an in-memory table, hashed with bcrypt when the app loads --------------------

def _demo_user(username: str, full_name: str, password: str, disabled: bool = False) -> dict:
    return {
        "username": username,
        "full_name": full_name,
        "email": f"{username}@example.com",
        "hashed_password": pwd_context.hash(password),
        "disabled": disabled,
    }


fake_users_db = {
    row["username"]: row
    for row in (
        _demo_user("johndoe", "John Doe", "secret"),
        _demo_user("janedoe", "Jane Doe", "secret2"),
        _demo_user("alice", "Alice Disabled", "secret3", disabled=True),
    )
}


def get_user(db: dict, username: str) -> UserInDB | None:
    row = db.get(username)
    return UserInDB(**row) if row is not None else None


def authenticate_user(db: dict, username: str, password: str) -> UserInDB | bool:
    """The user if the password matches, else False. Called from ``async def``: blocks the loop."""
    user = get_user(db, username)
    if user is None:
        return False  # no hash for an unknown user, as in the tutorial
    if not pwd_context.verify(password, user.hashed_password):
        return False
    return user


# --- tokens ----------------------------------------------------------------------------------

def create_access_token(data: dict, expires_delta: timedelta | None = None) -> str:
    claims = dict(data)
    claims["exp"] = datetime.now(timezone.utc) + (expires_delta or DEFAULT_EXPIRY)
    return jwt.encode(claims, SECRET_KEY, algorithm=ALGORITHM)


def username_from_token(token: str) -> str | None:
    """The ``sub`` claim of a valid token, or None for a bad signature, an expired token, etc."""
    try:
        claims = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except InvalidTokenError:
        return None
    return claims.get("sub")


# --- HTTP ------------------------------------------------------------------------------------

app = FastAPI()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> UserInDB:
    username = username_from_token(token)
    user = get_user(fake_users_db, username) if username is not None else None
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Could not validate credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


async def get_current_active_user(current_user: Annotated[User, Depends(get_current_user)]) -> User:
    if current_user.disabled:
        raise HTTPException(status_code=400, detail="Inactive user")
    return current_user


@app.post("/token", response_model=Token)
async def login_for_access_token(form_data: Annotated[OAuth2PasswordRequestForm, Depends()]):
    # bcrypt on the event loop: the tutorial's choice, kept (see the module docstring).
    user = authenticate_user(fake_users_db, form_data.username, form_data.password)
    if not user:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    access_token = create_access_token(
        {"sub": user.username}, expires_delta=timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    )
    return {"access_token": access_token, "token_type": "bearer"}


@app.get("/users/me")
async def read_users_me(current_user: Annotated[User, Depends(get_current_active_user)]):
    # A plain User: the stored hash must not be in the answer.
    return User(**current_user.model_dump())


@app.get("/items/")
async def read_items(token: Annotated[str, Depends(oauth2_scheme)]):
    return {"token": token}


# --- WebSockets ------------------------------------------------------------------------------

class OAuth2WebSocketPasswordBearer(OAuth2PasswordBearer):
    """``OAuth2PasswordBearer`` for a WebSocket: the bearer token from the handshake's header."""

    async def __call__(self, websocket: WebSocket) -> str:
        authorization = websocket.headers.get("authorization")
        if not authorization:
            raise WebSocketException(code=status.HTTP_401_UNAUTHORIZED, reason="Not authenticated")
        # Exactly "<scheme> <token>", as in the tutorial: anything else is an unhandled error.
        scheme, token = authorization.split()
        if scheme.lower() != "bearer":
            raise WebSocketException(
                code=status.HTTP_403_FORBIDDEN, reason="Invalid authentication credentials"
            )
        return token


oauth2_scheme_for_ws = OAuth2WebSocketPasswordBearer(tokenUrl="/token")


# A plain ``def``, as in the tutorial: FastAPI runs it in its thread pool.
def get_username_from_token(token: Annotated[str, Depends(oauth2_scheme_for_ws)]) -> str:
    username = username_from_token(token)
    if not username or get_user(fake_users_db, username) is None:
        raise WebSocketException(
            code=status.HTTP_401_UNAUTHORIZED, reason="Invalid authentication credentials"
        )
    return username


async def echo(websocket: WebSocket) -> None:
    async for text in websocket.iter_text():
        await websocket.send_text(f"You wrote: {text}")


@app.websocket("/secured-ws")
async def secured_websocket(
    websocket: WebSocket, username: Annotated[str, Depends(get_username_from_token)]
):
    await websocket.accept()
    await websocket.send_text(f"Welcome {username}!")
    await echo(websocket)


@app.websocket("/ws")
async def websocket_query(websocket: WebSocket, token: Annotated[str, Query()]):
    # Accepted before the token is checked, and the user is not looked up: as in the tutorial.
    await websocket.accept()
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except InvalidTokenError as err:
        await websocket.send_text(str(err))
        await websocket.close()
        return
    await websocket.send_text("Successfully Login!")
    await websocket.send_text(f"Here your decoded token: {payload}")
    await echo(websocket)
