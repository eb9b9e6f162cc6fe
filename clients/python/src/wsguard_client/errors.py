"""What a call can raise. Every answer that is not a success is an `ApiError` carrying the HTTP
status and wsguard's `detail` text; catch a branch of the hierarchy to handle a family of them.

    WsguardError
    ├── ConfigError            no base URL or API key (also a ValueError)
    ├── TransportError         wsguard could not be reached, or did not answer in time
    ├── UnexpectedResponse     a success whose body is not what the API describes
    └── ApiError               status, detail
        ├── AuthError
        │   ├── Unauthorized   401: missing or unknown API key
        │   └── Forbidden      403: the key lacks the scope
        ├── RequestError       4xx: a mistake in the request; nothing was done
        │   ├── InvalidRequest 400, 422: a bad body or parameter
        │   ├── NotFound       404
        │   └── PayloadTooLarge 413
        ├── RateLimited        429: retry_after seconds, when the server said
        └── ServerError        5xx
"""

from __future__ import annotations


class WsguardError(Exception):
    """The base of every error this package raises."""


class ConfigError(WsguardError, ValueError):
    """The client was built without a base URL or an API key, or with a bad one."""


class TransportError(WsguardError):
    """The request did not get an answer: connection refused, DNS, TLS, or a timeout."""


class UnexpectedResponse(WsguardError):
    """A success status whose body does not have the documented shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class ApiError(WsguardError):
    """wsguard answered with an error status. `detail` is its explanation, safe to log or show."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


class AuthError(ApiError):
    """The API key was refused (401) or may not do this (403)."""


class Unauthorized(AuthError):
    """401: no API key, or one wsguard does not know (or that was removed)."""


class Forbidden(AuthError):
    """403: the API key is valid but lacks the scope this call needs."""


class RequestError(ApiError):
    """A 4xx other than 401, 403 and 429: the request itself was wrong and changed nothing."""


class InvalidRequest(RequestError):
    """400 or 422: a body or parameter wsguard refused (an unknown namespace, a bad channel)."""


class NotFound(RequestError):
    """404."""


class PayloadTooLarge(RequestError):
    """413: the body is over wsguard's limit."""


class RateLimited(ApiError):
    """429: too many requests. `retry_after` is how many seconds the server asked to wait, or
    None when it did not say."""

    def __init__(self, status: int, detail: str, retry_after: float | None) -> None:
        super().__init__(status, detail)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: wsguard (or a proxy in front of it) failed; the request may be retried later."""
