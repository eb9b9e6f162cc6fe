"""A client for wsguard's server API: what a backend does with an API key (publish to channels,
disconnect and revoke users, read channels, presence and history)."""

from .async_client import AsyncWsguardClient
from .client import WsguardClient
from .errors import (
    ApiError,
    AuthError,
    ConfigError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestError,
    ServerError,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    WsguardError,
)
from .models import ChannelInfo, History, Publication

__all__ = [
    "ApiError",
    "AsyncWsguardClient",
    "AuthError",
    "ChannelInfo",
    "ConfigError",
    "Forbidden",
    "History",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "Publication",
    "RateLimited",
    "RequestError",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "WsguardClient",
    "WsguardError",
]
