"""A FastAPI router that answers wsguard's proxy calls and receives its webhooks with the
application's own functions::

    from wsguard_client.router import proxy_router
    app.include_router(proxy_router(connect=who_is, subscribe=may_follow), prefix="/rt")

Each handler takes the call (``ConnectRequest``, ``SubscribeRequest``…) and FastAPI's
``Request`` (its cookies and headers are the client's, as wsguard forwards them), sync or async,
and returns the matching result, or raises :class:`~wsguard_client.proxy.Refuse` or
:class:`~wsguard_client.proxy.Disconnect`. Needs ``fastapi`` (``pip install
wsguard-client[fastapi]``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .grants import InvalidSignature, verify_webhook
from .proxy import (
    ConnectRequest,
    ConnectResult,
    Disconnect,
    JSONObject,
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

Call = TypeVar("Call")
Result = TypeVar("Result")
Handler = Callable[[Call, Request], "Result | Awaitable[Result]"]


class _Answer(Protocol):
    def answer(self) -> JSONObject: ...


def proxy_router(
    *,
    connect: Handler[ConnectRequest, ConnectResult] | None = None,
    refresh: Handler[RefreshRequest, RefreshResult] | None = None,
    subscribe: Handler[SubscribeRequest, SubscribeResult] | None = None,
    publish: Handler[PublishRequest, PublishResult] | None = None,
    rpc: Handler[RpcRequest, RpcResult] | None = None,
    webhook_secret: str | bytes | None = None,
    on_webhook: Callable[[list[JSONObject]], Awaitable[None] | None] | None = None,
) -> APIRouter:
    """POST ``/connect``, ``/refresh``, ``/subscribe``, ``/publish``, ``/rpc`` for the handlers
    given, and ``/hooks`` when ``on_webhook`` is (its signature checked with ``webhook_secret``
    first: a request that fails is answered 401 and processed not at all)."""
    router = APIRouter(include_in_schema=False)
    routes: list[tuple[str, Any, Callable[[JSONObject], Any]]] = [
        ("connect", connect, ConnectRequest.from_json),
        ("refresh", refresh, RefreshRequest.from_json),
        ("subscribe", subscribe, SubscribeRequest.from_json),
        ("publish", publish, PublishRequest.from_json),
        ("rpc", rpc, RpcRequest.from_json),
    ]
    for name, handler, parse in routes:
        if handler is not None:
            router.add_api_route(f"/{name}", _endpoint(handler, parse), methods=["POST"])
    if on_webhook is not None:
        if webhook_secret is None:
            raise ValueError("on_webhook needs webhook_secret: unsigned webhooks are not accepted")
        router.add_api_route("/hooks", _hooks(webhook_secret, on_webhook), methods=["POST"])
    return router


def _endpoint(
    handler: Callable[[Any, Request], Any], parse: Callable[[JSONObject], Any]
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
            call = parse(body)
        except (ValueError, TypeError):
            # wsguard takes anything but 200 as the application failing: nothing is admitted.
            return JSONResponse({"detail": "not a wsguard proxy call"}, status_code=400)
        try:
            result = handler(call, request)
            if inspect.isawaitable(result):
                result = await result
        except (Refuse, Disconnect) as decided:
            return JSONResponse(decided.answer())
        answer: _Answer = result
        return JSONResponse(answer.answer())

    return endpoint


def _hooks(
    secret: str | bytes, on_webhook: Callable[[list[JSONObject]], Awaitable[None] | None]
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def hooks(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            payload = verify_webhook(body, request.headers.get("x-wsguard-signature"), secret)
        except InvalidSignature:
            return JSONResponse({"detail": "bad signature"}, status_code=401)
        except (ValueError, json.JSONDecodeError):
            return JSONResponse({"detail": "not a webhook"}, status_code=400)
        done = on_webhook(payload["events"])
        if inspect.isawaitable(done):
            await done
        return JSONResponse({})

    return hooks
