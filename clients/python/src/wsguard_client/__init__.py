"""A client for wsguard's server API: what a backend does with an API key (publish to channels,
disconnect and revoke users, read channels, presence and history); and the application's side of
wsguard's proxy calls, subscription tokens and webhooks (``proxy``, ``grants``, and with FastAPI
``router``)."""

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
from .grants import InvalidSignature, make_subscription_token, sign_webhook, verify_webhook
from .models import ChannelInfo, History, Publication
from .proxy import (
    ClientInfo,
    ConnectRequest,
    ConnectResult,
    Disconnect,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    RefreshResult,
    Refuse,
    RpcRequest,
    RpcResult,
    SubscribeRequest,
    SubscribeResult,
)

__all__ = [
    "ApiError",
    "AsyncWsguardClient",
    "AuthError",
    "ChannelInfo",
    "ClientInfo",
    "ConfigError",
    "ConnectRequest",
    "ConnectResult",
    "Disconnect",
    "Forbidden",
    "History",
    "InvalidRequest",
    "InvalidSignature",
    "NotFound",
    "PayloadTooLarge",
    "Publication",
    "PublishRequest",
    "PublishResult",
    "RateLimited",
    "RefreshRequest",
    "RefreshResult",
    "Refuse",
    "RequestError",
    "RpcRequest",
    "RpcResult",
    "ServerError",
    "SubscribeRequest",
    "SubscribeResult",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "WsguardClient",
    "WsguardError",
    "make_subscription_token",
    "sign_webhook",
    "verify_webhook",
]
