"""The tutorial's users: a fake database with argon2 hashes, and the login check both the token
login (`/token`) and the session login (`/session`) use."""

from __future__ import annotations

from pwdlib import PasswordHash
from pydantic import BaseModel

password_hash = PasswordHash.recommended()  # argon2id
# Verified against when the user does not exist, so that an unknown name takes as long.
DUMMY_HASH = password_hash.hash("dummy password")

# The tutorial's fake database: passwords `secret` (johndoe), `secret2` (janedoe), `secret3`
# (alice, disabled). janedoe administers the app: she may notify anyone.
fake_users_db = {
    "johndoe": {
        "username": "johndoe",
        "full_name": "John Doe",
        "email": "johndoe@example.com",
        "hashed_password": "$argon2id$v=19$m=65536,t=3,p=4$OHNV0GFzsIaTnXywGcdCbA$RrsPxWJeJoMPGk00YyDpkkVc/N3vfM67GloOm0mVocQ",  # noqa: E501
        "disabled": False,
        "admin": False,
    },
    "janedoe": {
        "username": "janedoe",
        "full_name": "Jane Doe",
        "email": "janedoe@example.com",
        "hashed_password": "$argon2id$v=19$m=65536,t=3,p=4$xaM9hQ5awaLnNY5FNHfk0A$c39okcZ0bwXoCAoRpbsliaqrEvFMy/o4VETMv/by0tE",  # noqa: E501
        "disabled": False,
        "admin": True,
    },
    "alice": {
        "username": "alice",
        "full_name": "Alice Wonderson",
        "email": "alice@example.com",
        "hashed_password": "$argon2id$v=19$m=65536,t=3,p=4$v/roWA8CKqPpM1nwJx/3+w$6pFRE12+ivSOaFPh1QJk02ILjkCmaxQ2eug85+2EnCc",  # noqa: E501
        "disabled": True,
        "admin": False,
    },
}


class User(BaseModel):
    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None
    admin: bool = False


class UserInDB(User):
    hashed_password: str


def verify_password(plain_password: str, hashed_password: str) -> bool:
    return password_hash.verify(plain_password, hashed_password)


def get_user(db: dict[str, dict[str, object]], username: str) -> UserInDB | None:
    if username in db:
        return UserInDB.model_validate(db[username])
    return None


def authenticate_user(
    db: dict[str, dict[str, object]], username: str, password: str
) -> UserInDB | None:
    user = get_user(db, username)
    if not user:
        verify_password(password, DUMMY_HASH)
        return None
    if not verify_password(password, user.hashed_password):
        return None
    return user
