"""The blocking client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _protocol, errors
from .models import ChannelInfo, History

T = TypeVar("T")


class WsguardClient:
    """wsguard's server API, for a backend holding an API key.

    `base_url` defaults to `WSGUARD_URL`, `api_key` to `WSGUARD_API_KEY`; `timeout` is in seconds
    (or an `httpx.Timeout`) for each request. Pass `http_client` to share a pool of your own (it is
    not closed by `close()`). Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = _protocol.DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = _protocol.resolve_base_url(base_url)
        self._headers = _protocol.headers(_protocol.resolve_api_key(api_key))
        self._timeout = timeout
        self._owns_http = http_client is None
        self._http = (
            http_client if http_client is not None else httpx.Client(follow_redirects=False)
        )

    def __repr__(self) -> str:  # never the key
        return f"WsguardClient({self.base_url!r})"

    def publish(self, channel: str, data: Mapping[str, Any]) -> int | None:
        """Publishes `data` (a JSON object) to `channel`. Returns its offset in the channel's
        history, or None when the channel keeps no history."""
        return self._send(_protocol.publish(channel, data))

    def broadcast(self, channels: Sequence[str], data: Mapping[str, Any]) -> dict[str, int | None]:
        """Publishes `data` to each of `channels`; returns each channel's offset (or None)."""
        return self._send(_protocol.broadcast(channels, data))

    def disconnect(self, username: str) -> None:
        """Closes every socket of `username` on every node (close code 4003). Their tokens still
        open new sockets: see `revoke`."""
        self._send(_protocol.disconnect(username))

    def revoke(self, username: str) -> None:
        """Disconnects `username` and refuses every token of theirs issued before now."""
        self._send(_protocol.revoke(username))

    def channels(self) -> list[ChannelInfo]:
        """The channels that have subscribers, with how many."""
        return self._send(_protocol.channels())

    def presence(self, channel: str) -> list[str]:
        """The users subscribed to `channel` (a namespace with presence)."""
        return self._send(_protocol.presence(channel))

    def history(self, channel: str, limit: int | None = None, since: int | None = None) -> History:
        """The channel's kept publications, oldest first: at most `limit`, those after offset
        `since` when given."""
        return self._send(_protocol.history(channel, limit, since))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> WsguardClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: _protocol.Call[T]) -> T:
        try:
            response = self._http.request(
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
