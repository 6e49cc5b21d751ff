"""The daily digest: one Block Kit summary of the open incidents per channel, posted by the scheduler.

`render_digest` is pure (incidents in, blocks out); `post_digests` reads the open incidents from the store, groups
them by the channel each one's thread is in (else the one `Router.route` picks), and posts one digest per channel
that has any, plus the default channel even when it has none ("No open incidents. 🎉").
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject, PlainTextObject, SectionBlock

from bot.blocks.incident import root_label
from bot.blocks.kit import (
    FIELD_TEXT,
    HEADER_TEXT,
    MESSAGE_BLOCKS,
    SECTION_FIELDS,
    SECTION_TEXT,
    SEVERITY_ORDER,
    STATUS_EMOJI,
    clip,
    code,
    elapsed,
    esc,
    more,
    severity_emoji,
    when,
)
from bot.core import services
from bot.core.routing import Router
from bot.core.settings import Settings
from bot.core.slack_text import ago
from bot.delivery.notifier import Notifier
from storage.errors import DnaBotError
from storage.persistence import outbox, threads
from storage.persistence.db import session_factory
from storage.persistence.incident_views import IncidentView

log = logging.getLogger(__name__)

DIGEST_TOP = 10
NONE_OPEN = "No open incidents. 🎉"
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def _channel_label(channel: str) -> str:
    """`<#C…>` for a channel id (Slack shows its name), else the escaped name as given (`#data-incidents`)."""
    return f"<#{channel}>" if _CHANNEL_ID.match(channel) else esc(channel)


def _header(text: str) -> dict[str, Any]:
    return HeaderBlock(text=PlainTextObject(text=clip(text, HEADER_TEXT), emoji=True)).to_dict()


def _section(text: str | None = None, fields: Sequence[str] = ()) -> dict[str, Any]:
    return SectionBlock(
        text=MarkdownTextObject(text=clip(text, SECTION_TEXT)) if text else None,
        fields=[MarkdownTextObject(text=clip(f, FIELD_TEXT)) for f in fields[:SECTION_FIELDS]] or None,
    ).to_dict()


def _context(text: str) -> dict[str, Any]:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(text, SECTION_TEXT))]).to_dict()


def severity_counts(incidents: Sequence[IncidentView]) -> dict[str, int]:
    """Open incidents per severity, most severe first (unknown severities last, by name)."""
    counts = Counter(i.severity for i in incidents)
    return {k: counts[k] for k in sorted(counts, key=lambda s: (_rank(s), s))}


def digest_order(incidents: Sequence[IncidentView]) -> list[IncidentView]:
    """Most severe first, then the longest open first (then by id, for a stable order)."""
    return sorted(incidents, key=lambda i: (_rank(i.severity), i.opened_at.timestamp(), i.id))


def _row(incident: IncidentView, now: datetime) -> str:
    status = f"{STATUS_EMOJI.get(incident.status, '')} {esc(incident.status)}".strip()
    age = ago(elapsed(now, incident.opened_at))
    title = f"{severity_emoji(incident.severity)} *#{incident.id}* {esc(clip(incident.title, 300))}"
    return f"{title}\n{status} · open for {age} (since {when(incident.opened_at)}) · {code(root_label(incident))}"


def render_digest(incidents: Sequence[IncidentView], *, channel: str, now: datetime) -> list[dict[str, Any]]:
    """The daily digest for one channel: counts by severity, the top 10 (status and age), "…and N more".

    Resolved incidents are left out if any are passed. At most 15 blocks, every text within Slack's limits.
    """
    open_ = digest_order([i for i in incidents if i.status != "resolved"])
    where = _channel_label(channel)
    blocks = [_header(":sunrise: Daily incident digest")]
    if not open_:
        blocks.append(_section(NONE_OPEN))
        blocks.append(_context(f"{where} · as of {when(now)}"))
        return blocks
    total = len(open_)
    noun = "incident" if total == 1 else "incidents"
    counts = [f"{severity_emoji(k)} *{esc(k)}*: {n}" for k, n in severity_counts(open_).items()]
    if len(counts) > SECTION_FIELDS:  # only with many made-up severities: keep the last field for the rest
        counts = [*counts[: SECTION_FIELDS - 1], more(len(counts) - SECTION_FIELDS + 1)]
    blocks.append(_section(f"*{total} open {noun}* in {where}", fields=counts))
    blocks.extend(_section(_row(i, now)) for i in open_[:DIGEST_TOP])
    if total > DIGEST_TOP:
        blocks.append(_context(f"{more(total - DIGEST_TOP)} (`/dna incidents open` lists them all)"))
    blocks.append(_context(f"As of {when(now)} · Acknowledge, assign or resolve them in their threads."))
    return blocks[:MESSAGE_BLOCKS]  # 1 header + 1 counts + 10 rows + 2 contexts: always well under 50


def digest_text(incidents: Sequence[IncidentView]) -> str:
    """The notification / fallback text of a digest."""
    open_ = [i for i in incidents if i.status != "resolved"]
    if not open_:
        return f"Daily incident digest: {NONE_OPEN}"
    parts = ", ".join(f"{k}: {n}" for k, n in severity_counts(open_).items())
    return f"Daily incident digest: {len(open_)} open ({parts})"


def group_by_channel(
    incidents: Sequence[IncidentView], router: Router, posted_in: Mapping[int, str] | None = None
) -> dict[str, list[IncidentView]]:
    """The open incidents per channel: the one its thread lives in (`posted_in`, incident id → channel), else the
    routed one, so a digest never shows an incident outside the channel that has it (routing may have changed
    since, from a private channel to a public one); the default channel is always there (maybe with none)."""
    groups: dict[str, list[IncidentView]] = {router.default_channel: []}
    posted_in = posted_in or {}
    for incident in incidents:
        if incident.status == "resolved":
            continue
        groups.setdefault(posted_in.get(incident.id) or router.route(incident), []).append(incident)
    return groups


def _threads(settings: Settings, incidents: Sequence[IncidentView]) -> dict[int, str]:
    with session_factory(services.engine_for(settings))() as session:
        found = {i.id: threads.thread_of(session, i.id) for i in incidents}
    return {incident_id: t.channel for incident_id, t in found.items() if t is not None}


def post_digests(
    settings: Settings, client: WebClient, router: Router, *, now: datetime, notifier: Notifier | None = None
) -> dict[str, int]:
    """Owe one digest per channel with open incidents, plus the default channel, then deliver them: channel →
    open incidents in the digest, for the digests Slack took.

    Each digest is an outbox row keyed by channel and UTC day, so replicas (or a rerun) never post it twice; a
    channel Slack refuses (not in channel, archived, …) is retried from the outbox and left out of the result.
    """
    open_now = services.incidents_list(settings, "open")
    groups = group_by_channel(open_now, router, _threads(settings, open_now))
    engine = services.engine_for(settings)
    day = now.astimezone(UTC).date().isoformat()
    keys: dict[str, str] = {}
    with session_factory(engine).begin() as session:
        for channel, items in groups.items():
            if not channel:  # no default channel configured: nowhere to post the unrouted incidents
                continue
            keys[channel] = f"digest:{channel}:{day}"
            payload = {
                "channel": channel,
                "count": len(items),
                "text": digest_text(items),
                "blocks": render_digest(items, channel=channel, now=now),
            }
            outbox.enqueue(session, keys[channel], "digest", lane=f"digest:{channel}", now=now, payload=payload)
    drainer = notifier or Notifier(client, router, max_attempts=settings.outbox_max_attempts)
    drainer.publish(engine, lanes=[f"digest:{c}" for c in keys])
    posted: dict[str, int] = {}
    with session_factory(engine)() as session:
        for channel, key in keys.items():
            if outbox.delivered_result(session, key) is not None:
                posted[channel] = len(groups[channel])
            else:
                log.warning("daily digest for %s not delivered yet; the outbox retries it", channel)
    return posted


def daily_digest(
    settings: Settings, client: WebClient, router: Router, *, notifier: Notifier | None = None
) -> dict[str, int]:
    """The scheduled job: `post_digests` now; an unreadable store is logged, not raised into the scheduler."""
    try:
        return post_digests(settings, client, router, now=datetime.now(UTC), notifier=notifier)
    except DnaBotError as exc:
        log.warning("daily digest skipped: %s", exc)
        return {}
