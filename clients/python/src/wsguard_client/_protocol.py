"""The one mapping between the client's calls and wsguard's server API, shared by the sync and
the async client: each call is described as a `Call` (what to send, how to read the answer), and
`finish` turns an HTTP answer into the result or the typed error. No I/O here."""

from __future__ import annotations

import email.utils
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

from . import errors
from .models import ChannelInfo, History, Publication

T = TypeVar("T")

URL_ENV = "WSGUARD_URL"
KEY_ENV = "WSGUARD_API_KEY"
DEFAULT_TIMEOUT = 10.0
USER_AGENT = "wsguard-client-python/0.1.0"


# --- configuration ---------------------------------------------------------------------------


def resolve_base_url(base_url: str | None) -> str:
    """The argument, else `WSGUARD_URL`; an http(s) URL with a host, without a trailing slash."""
    value = base_url if base_url is not None else os.environ.get(URL_ENV)
    if value is None or not value.strip():
        raise errors.ConfigError(f"no wsguard URL: pass base_url or set {URL_ENV}")
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.ConfigError(
            f"the wsguard URL must be http:// or https:// with a host: {value!r}"
        )
    if parts.query or parts.fragment:
        raise errors.ConfigError("the wsguard URL must not have a query or fragment")
    return value.rstrip("/")


def resolve_api_key(api_key: str | None) -> str:
    """The argument, else `WSGUARD_API_KEY`. Never shown in an error."""
    value = api_key if api_key is not None else os.environ.get(KEY_ENV)
    if value is None or not value.strip():
        raise errors.ConfigError(f"no API key: pass api_key or set {KEY_ENV}")
    value = value.strip()
    if not value.isprintable() or " " in value:
        raise errors.ConfigError("the API key holds spaces or control characters")
    return value


def headers(api_key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {api_key}",
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
    }


# --- arguments -------------------------------------------------------------------------------


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value or value.strip() != value or not value.isprintable():
        raise ValueError(
            f"{name} must be non-empty, without surrounding spaces or control characters"
        )
    return value


def _channel(value: object) -> str:
    return _text("channel", value)


def _username(value: object) -> str:
    name = _text("username", value)
    if name in (".", ".."):
        raise ValueError("username must not be '.' or '..'")
    return name


def _segment(value: str) -> str:
    """A path segment: `/`, `?`, `#`, `%` and such escaped; `:` and `@` kept (RFC 3986 pchar)."""
    return quote(value, safe=":@")


def _data(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"data must be a JSON object (a mapping), not {type(value).__name__}")
    return value


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def _json_body(body: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as e:  # NaN or infinity, or a circular reference
        raise ValueError(f"data is not valid JSON: {e}") from None
    except TypeError as e:  # a value json cannot encode
        raise TypeError(f"data is not JSON-serializable: {e}") from None


# --- calls -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the API and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[int, bytes], T]
    params: dict[str, str] | None = None
    body: bytes | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"} if self.body is not None else {}


def publish(channel: str, data: Mapping[str, Any]) -> Call[int | None]:
    body = _json_body({"channel": _channel(channel), "data": _data(data)})
    return Call("POST", "/api/publish", _parse_offset, body=body)


def broadcast(channels: Sequence[str], data: Mapping[str, Any]) -> Call[dict[str, int | None]]:
    if isinstance(channels, str | bytes) or not isinstance(channels, Sequence):
        raise TypeError("channels must be a list of channel names")
    names = [_channel(c) for c in channels]
    if not names:
        raise ValueError("channels must not be empty")
    if len(set(names)) != len(names):
        raise ValueError("channels lists a channel twice")
    body = _json_body({"channels": names, "data": _data(data)})
    return Call("POST", "/api/broadcast", _parse_offsets, body=body)


def disconnect(username: str) -> Call[None]:
    return Call("POST", f"/api/users/{_segment(_username(username))}/disconnect", _parse_nothing)


def revoke(username: str) -> Call[None]:
    return Call("POST", f"/api/users/{_segment(_username(username))}/revoke", _parse_nothing)


def channels() -> Call[list[ChannelInfo]]:
    return Call("GET", "/api/channels", _parse_channels)


def presence(channel: str) -> Call[list[str]]:
    return Call("GET", f"/api/channels/{_segment(_channel(channel))}/presence", _parse_users)


def history(channel: str, limit: int | None = None, since: int | None = None) -> Call[History]:
    params: dict[str, str] = {}
    if limit is not None:
        params["limit"] = str(_count("limit", limit, 1))
    if since is not None:
        params["since"] = str(_count("since", since, 0))
    path = f"/api/channels/{_segment(_channel(channel))}/history"
    return Call("GET", path, _parse_history, params=params or None)


# --- answers ---------------------------------------------------------------------------------


def finish(call: Call[T], status: int, response_headers: Mapping[str, str], content: bytes) -> T:
    """The call's result for a 2xx answer; otherwise the typed error."""
    if 200 <= status < 300:
        return call.parse(status, content)
    raise error_for(status, response_headers, content)


def error_for(status: int, response_headers: Mapping[str, str], content: bytes) -> errors.ApiError:
    detail = _detail(content) or f"HTTP {status}"
    if status == 401:
        return errors.Unauthorized(status, detail)
    if status == 403:
        return errors.Forbidden(status, detail)
    if status == 429:
        return errors.RateLimited(status, detail, retry_after(response_headers.get("retry-after")))
    if status == 413:
        return errors.PayloadTooLarge(status, detail)
    if status == 404:
        return errors.NotFound(status, detail)
    if status in (400, 422):
        return errors.InvalidRequest(status, detail)
    if 400 <= status < 500:
        return errors.RequestError(status, detail)
    if status >= 500:
        return errors.ServerError(status, detail)
    return errors.ApiError(status, detail)


def _detail(content: bytes) -> str:
    """wsguard's `{"detail": …}`, or the start of whatever a proxy answered."""
    try:
        body = json.loads(content)
    except ValueError:
        return content[:200].decode("utf-8", "replace").strip()
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)
    return json.dumps(body)[:200]


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delay-seconds or an HTTP date; None when absent or
    unreadable, never negative."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return float(max(0, math.ceil(seconds)))


def _json(status: int, content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        raise errors.UnexpectedResponse(status, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise errors.UnexpectedResponse(status, "the body is not a JSON object")
    return body


def _offset(status: int, value: object, what: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise errors.UnexpectedResponse(status, f"{what} is not an integer or null")


def _parse_nothing(status: int, content: bytes) -> None:
    return None


def _parse_offset(status: int, content: bytes) -> int | None:
    body = _json(status, content)
    if "offset" not in body:
        raise errors.UnexpectedResponse(status, "no offset in the answer")
    return _offset(status, body["offset"], "offset")


def _parse_offsets(status: int, content: bytes) -> dict[str, int | None]:
    offsets = _json(status, content).get("offsets")
    if not isinstance(offsets, dict):
        raise errors.UnexpectedResponse(status, "no offsets object in the answer")
    return {str(k): _offset(status, v, f"the offset of {k}") for k, v in offsets.items()}


def _parse_users(status: int, content: bytes) -> list[str]:
    users = _json(status, content).get("users")
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise errors.UnexpectedResponse(status, "users is not a list of names")
    return users


def _parse_channels(status: int, content: bytes) -> list[ChannelInfo]:
    items = _json(status, content).get("channels")
    if not isinstance(items, list):
        raise errors.UnexpectedResponse(status, "channels is not a list")
    result = []
    for item in items:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("channel"), str)
            and isinstance(item.get("subscribers"), int)
        ):
            raise errors.UnexpectedResponse(
                status, "a channel without its name or subscriber count"
            )
        result.append(ChannelInfo(channel=item["channel"], subscribers=item["subscribers"]))
    return result


def _parse_history(status: int, content: bytes) -> History:
    body = _json(status, content)
    items, epoch = body.get("publications"), body.get("epoch")
    if not isinstance(items, list) or not isinstance(epoch, str):
        raise errors.UnexpectedResponse(status, "history without publications or epoch")
    return History(publications=[_publication(status, p) for p in items], epoch=epoch)


def _publication(status: int, item: object) -> Publication:
    if not isinstance(item, dict) or "data" not in item:
        raise errors.UnexpectedResponse(status, "a publication without data")
    offset = _offset(status, item.get("offset"), "a publication's offset")
    sender, ts = item.get("from"), item.get("ts")
    if offset is None or not isinstance(sender, str | None) or not isinstance(ts, str | None):
        raise errors.UnexpectedResponse(status, "a publication with a bad offset, from or ts")
    return Publication(offset=offset, data=item["data"], from_user=sender, ts=ts)
