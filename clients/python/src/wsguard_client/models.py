"""What the read calls return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: A JSON object as it was decoded.
JSONObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication of a channel's history."""

    #: Its position in the channel; grows by one per publication within an epoch.
    offset: int
    #: The published JSON object.
    data: Any
    #: The user whose socket published it, or None when it came from the server API.
    from_user: str | None
    #: When wsguard stored it (RFC 3339, UTC), if the server said.
    ts: str | None


@dataclass(frozen=True, slots=True)
class History:
    """A channel's kept publications, oldest first."""

    publications: list[Publication]
    #: Names the channel's history: when it changes, offsets started over (the history was lost
    #: or expired) and a client must not compare offsets across epochs.
    epoch: str


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel with subscribers."""

    channel: str
    subscribers: int
