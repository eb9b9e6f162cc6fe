"""The asyncio client: the same calls as `WsguardClient`, awaited."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _protocol, errors
from .models import ChannelInfo, History

T = TypeVar("T")


class AsyncWsguardClient:
    """wsguard's server API, for a backend holding an API key.

    `base_url` defaults to `WSGUARD_URL`, `api_key` to `WSGUARD_API_KEY`; `timeout` is in seconds
    (or an `httpx.Timeout`) for each request. Pass `http_client` to share a pool of your own (it is
    not closed by `aclose()`). Use it with `async with`, or call `aclose()`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = _protocol.DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = _protocol.resolve_base_url(base_url)
        self._headers = _protocol.headers(_protocol.resolve_api_key(api_key))
        self._timeout = timeout
        self._owns_http = http_client is None
        self._http = (
            http_client if http_client is not None else httpx.AsyncClient(follow_redirects=False)
        )

    def __repr__(self) -> str:  # never the key
        return f"AsyncWsguardClient({self.base_url!r})"

    async def publish(self, channel: str, data: Mapping[str, Any]) -> int | None:
        """Publishes `data` (a JSON object) to `channel`. Returns its offset in the channel's
        history, or None when the channel keeps no history."""
        return await self._send(_protocol.publish(channel, data))

    async def broadcast(
        self, channels: Sequence[str], data: Mapping[str, Any]
    ) -> dict[str, int | None]:
        """Publishes `data` to each of `channels`; returns each channel's offset (or None)."""
        return await self._send(_protocol.broadcast(channels, data))

    async def disconnect(self, username: str) -> None:
        """Closes every socket of `username` on every node (close code 4003). Their tokens still
        open new sockets: see `revoke`."""
        await self._send(_protocol.disconnect(username))

    async def revoke(self, username: str) -> None:
        """Disconnects `username` and refuses every token of theirs issued before now."""
        await self._send(_protocol.revoke(username))

    async def channels(self) -> list[ChannelInfo]:
        """The channels that have subscribers, with how many."""
        return await self._send(_protocol.channels())

    async def presence(self, channel: str) -> list[str]:
        """The users subscribed to `channel` (a namespace with presence)."""
        return await self._send(_protocol.presence(channel))

    async def history(
        self, channel: str, limit: int | None = None, since: int | None = None
    ) -> History:
        """The channel's kept publications, oldest first: at most `limit`, those after offset
        `since` when given."""
        return await self._send(_protocol.history(channel, limit, since))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncWsguardClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: _protocol.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method,
                self.base_url + call.path,
                params=call.params,
                content=call.body,
                headers={**self._headers, **call.headers},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as e:
            raise errors.TransportError(f"no answer from {self.base_url} in time: {e}") from e
        except httpx.RequestError as e:
            raise errors.TransportError(f"cannot reach {self.base_url}: {e}") from e
        return _protocol.finish(call, response.status_code, response.headers, response.content)
