"""Who may see which incident in a list: one routed only to private channels shows only to their members and admins.

An incident's channels are its thread's channel (where it was posted), the channel routing picks for it and the
channels subscribed to what it touches. It is listed to everyone when one of them is public, else only to admins
and to the members of one of them. Slack says which channels are private (`conversations.info`) and who is in them
(`conversations.members`, paged); both answers are cached for `TTL_SECONDS`. A channel Slack cannot tell about
(an error, a missing scope, a private channel the bot is not in) counts as private with no members: when in doubt
an incident is hidden, and the list says how many were.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core.routing import router_for
from bot.core.settings import Settings
from bot.core.slack_client import build_client
from storage.errors import DnaBotError
from storage.persistence import db, subscriptions, threads
from storage.persistence.incident_views import IncidentView

log = logging.getLogger(__name__)

TTL_SECONDS = 60.0
MAX_MEMBER_PAGES = 50  # 50 pages of 1000: a channel bigger than that counts as unreadable (hidden, not guessed)


@dataclass(frozen=True, slots=True)
class Visible:
    """The incidents one user may see, and how many were left out for them."""

    incidents: list[IncidentView]
    hidden: int = 0

    @property
    def note(self) -> str | None:
        """What the list says about the ones left out (None when none were)."""
        if not self.hidden:
            return None
        return f"{self.hidden} incident(s) hidden: routed to private channels you are not in."


@dataclass(frozen=True, slots=True)
class _Channel:
    private: bool
    members: frozenset[str] | None  # None: unknown (a public channel needs no list; an unreadable one has none)


class ChannelDirectory:
    """What Slack says about channels, cached per channel for `ttl` seconds (an unreadable channel too, briefly)."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, _Channel]] = {}  # `<API url>|<channel>` → (read at, what it said)
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def channel(self, client: Any, channel: str) -> _Channel:
        """Whether `channel` is private and, if so, its members (None when Slack cannot tell)."""
        now = self.clock()
        key = f"{getattr(client, 'base_url', '')}|{channel}"  # one workspace's channel is not another's
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        seen = _read(client, channel)
        with self._lock:
            self._cache[key] = (now, seen)
        return seen


def _read(client: Any, channel: str) -> _Channel:
    try:
        info = client.conversations_info(channel=channel).get("channel") or {}
        if not info.get("is_private"):
            return _Channel(private=False, members=None)
        members: set[str] = set()
        cursor = None
        for _ in range(MAX_MEMBER_PAGES):
            page = client.conversations_members(channel=channel, limit=1000, **({"cursor": cursor} if cursor else {}))
            members.update(str(m) for m in page.get("members") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return _Channel(private=True, members=frozenset(members))
        log.warning("channel %s has more members than the bot reads: its incidents stay hidden", channel)
    except (SlackApiError, SlackClientError, OSError) as exc:
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log.warning("cannot tell who may see incidents routed to %s (%s): hidden but to admins", channel, error)
    return _Channel(private=True, members=None)


DIRECTORY = ChannelDirectory()


def channels_of(settings: Settings, items: Iterable[IncidentView]) -> dict[int, set[str]]:
    """Each incident's channels: its thread's, the routed one and the subscribed ones."""
    items = list(items)
    try:
        router = router_for(settings)
    except DnaBotError:  # no routing configured: only threads and subscriptions say where incidents went
        router = None
    out: dict[int, set[str]] = {}
    from bot.core import services  # late: services pulls in the agents

    with db.session_factory(services.engine_for(settings))() as session:
        for incident in items:
            found = set(subscriptions.channels_for(session, incident))
            thread = threads.thread_of(session, incident.id)
            if thread is not None:
                found.add(thread.channel)
            if router is not None and router.route(incident):
                found.add(router.route(incident))
            out[incident.id] = found
    return out


def visible_to(
    settings: Settings,
    user: str,
    items: Sequence[IncidentView],
    *,
    client: Any = None,
    directory: ChannelDirectory = DIRECTORY,
) -> Visible:
    """The incidents `user` may see of `items` (in their order); admins see them all."""
    if not items:
        return Visible([])
    from bot.core.authz import admins  # late: authz reads the store and Slack

    if user and user in admins(settings):
        return Visible(list(items))
    channels = channels_of(settings, items)
    client = _slack(settings, client, channels)
    shown = [i for i in items if _may_see(user, channels.get(i.id) or set(), client, directory)]
    return Visible(shown, len(items) - len(shown))


def visible_in(
    settings: Settings,
    channel: str,
    items: Sequence[IncidentView],
    *,
    client: Any = None,
    directory: ChannelDirectory = DIRECTORY,
) -> Visible:
    """The incidents an answer posted in `channel` may name: everyone there reads it, so an incident routed only
    to private channels is named only in one of those channels (whoever asked, admins included)."""
    if not items:
        return Visible([])
    channels = channels_of(settings, items)
    client = _slack(settings, client, channels)
    shown = [i for i in items if _may_name_in(channel, channels.get(i.id) or set(), client, directory)]
    return Visible(shown, len(items) - len(shown))


def _slack(settings: Settings, client: Any, channels: dict[int, set[str]]) -> Any:
    """The Web API client to ask about channels with (None when none is needed or none can be built)."""
    if client is not None or not any(channels.values()):
        return client
    try:
        return build_client(settings)
    except DnaBotError:
        return None


def _may_name_in(channel: str, channels: set[str], client: Any, directory: ChannelDirectory) -> bool:
    if not channels or channel in channels:
        return True
    if client is None:
        return False
    return any(not directory.channel(client, c).private for c in sorted(channels))


def _may_see(user: str, channels: set[str], client: Any, directory: ChannelDirectory) -> bool:
    if not channels:  # posted nowhere and routed nowhere: nothing private about it
        return True
    if client is None:
        return False
    seen = [directory.channel(client, c) for c in sorted(channels)]
    return any(not c.private or (c.members is not None and user in c.members) for c in seen)
