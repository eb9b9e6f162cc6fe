"""What the application signs and checks: subscription tokens for channels of namespaces with
``subscribe = "token"``, and the signature of wsguard's webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import jwt


class InvalidSignature(Exception):
    """A webhook whose ``X-Wsguard-Signature`` is missing or does not match its body."""


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < 32:
        raise ValueError("the secret must be at least 32 bytes, as wsguard requires of its files")
    return key


def make_subscription_token(
    secret: str | bytes,
    user: str,
    channel: str,
    ttl: timedelta | int,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    expire_at: int | None = None,
) -> str:
    """An HS256 subscription token that lets ``user`` follow ``channel`` for ``ttl`` (seconds or
    a timedelta). ``secret`` is the one of the trusted issuer wsguard knows the application as
    (its ``secret_file``), or wsguard's own HS256 secret with ``issuer`` set to wsguard's
    ``iss``. ``issuer`` and ``audience`` as that issuer is configured. ``expire_at`` (Unix
    seconds; 0: never) ends the subscription at another time than the token's ``exp``."""
    seconds = int(ttl.total_seconds()) if isinstance(ttl, timedelta) else int(ttl)
    if seconds <= 0:
        raise ValueError("ttl must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "channel": channel, "iat": now, "exp": now + seconds}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    if expire_at is not None:
        claims["expire_at"] = expire_at
    return jwt.encode(claims, _key(secret), algorithm="HS256")


def sign_webhook(body: bytes, secret: str | bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` with ``secret``: what ``X-Wsguard-Signature`` carries."""
    return hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_webhook(body: bytes, signature: str | None, secret: str | bytes) -> dict[str, Any]:
    """The webhook's payload (``{"time_ms", "events": [...]}``) once its signature, the hex
    HMAC-SHA256 of the exact body bytes, is checked in constant time. Raises
    :class:`InvalidSignature` otherwise: reject such a request (401) and process nothing."""
    if not signature or not hmac.compare_digest(sign_webhook(body, secret), signature.lower()):
        raise InvalidSignature("X-Wsguard-Signature does not match the body")
    payload = json.loads(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise ValueError("a signed body that is not a webhook")
    return payload
