"""`/dna`: ack at once, then parse the subcommand, call one service, render, and answer through `respond`."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App

from bot.blocks import (
    render_blast,
    render_dna_card,
    render_help,
    render_incidents,
    render_status,
    render_timeline,
    render_why,
)
from bot.blocks.kit import clip, code, esc, message, section, with_note
from bot.core import freshness, services, visibility
from bot.core.answers import AnswerPool, Refused
from bot.core.authz import admins, require_admin
from bot.core.redact import scrub, secrets_of
from bot.core.settings import Settings
from bot.core.timeparse import parse_since
from bot.slack.listeners.errors import UsageError, reported
from storage.persistence import subscriptions
from storage.persistence.db import session_factory

MAX_TEXT = 500
DEFAULT_SPAN = "7d"
Blocks = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a subcommand answers: blocks, the notification text in plain words (escaped on sending, like every
    `text` the bot sends), and whether the whole channel sees it."""

    blocks: Blocks
    text: str
    public: bool = False


def _need(args: list[str], usage: str) -> str:
    if not args:
        raise UsageError(f"Which dataset? Usage: `{usage}`")
    return args[0]


def _show(settings: Settings, args: list[str], user: str) -> Reply:
    public = bool(args) and args[-1].lower() == "public"
    args = args[:-1] if public else args
    view = services.dna(settings, _need(args, "/dna show <dataset> [public]"), None)
    return Reply(render_dna_card(view), f"DNA of {view.entity_fqn}", public=public)


def _timeline(settings: Settings, args: list[str], user: str) -> Reply:
    name = _need(args, "/dna timeline <dataset> [7d]")
    span = args[1] if len(args) > 1 else DEFAULT_SPAN
    fqn, changes = services.timeline(settings, name, parse_since(span))
    return Reply(render_timeline(fqn, changes, span), f"Timeline of {fqn}")


def _blast(settings: Settings, args: list[str], user: str) -> Reply:
    name = _need(args, "/dna blast <dataset> [column]")
    radius = services.blast(settings, name, args[1] if len(args) > 1 else None, None)
    return Reply(render_blast(radius), f"Blast radius of {name}")


def _why(settings: Settings, args: list[str], user: str) -> Reply:
    name = _need(args, "/dna why <dataset> [question]")
    # the answer is the asker's alone (ephemeral): it names the incidents they may see
    seen = functools.partial(_visible_to, settings, user)
    answer = asyncio.run(services.why(settings, name, " ".join(args[1:]) or None, visible=seen))
    return Reply(render_why(answer), clip(answer.answer, 300) or "Why")


def _visible_to(settings: Settings, user: str, items: Sequence[Any]) -> list[Any]:
    return visibility.visible_to(settings, user, items).incidents


def _incidents(settings: Settings, args: list[str], user: str) -> Reply:
    which = (args[0] if args else "open").lower()
    if which not in ("open", "all"):
        raise UsageError("Usage: `/dna incidents [open|all]`")
    seen = visibility.visible_to(settings, user, services.incidents_list(settings, which))
    if not seen.incidents and seen.hidden:
        blocks = [section(":lock: No incidents you can see.")]
    else:
        blocks = render_incidents(seen.incidents)
    note = f" {seen.note}" if seen.note else ""
    return Reply(with_note(blocks, seen.note), f"{len(seen.incidents)} incident(s).{note}")


def _status(settings: Settings, args: list[str], user: str) -> Reply:
    now = datetime.now(UTC)
    admin = bool(user) and user in admins(settings)
    internal = freshness.internal_endpoints(settings) if admin else ()  # internal addresses: admins only
    health = freshness.status(settings, now)
    if health is None:  # an empty store: nothing has synced yet, which is itself the status
        blocks = render_status(None, open_by_severity={}, stale_after=settings.stale_after, now=now, internal=internal)
    else:
        if not admin:  # no internal address, and only the open incidents this user may see are counted
            seen = visibility.visible_to(settings, user, services.incidents_list(settings, "open"))
            counts = Counter(i.severity for i in seen.incidents)
            health = replace(freshness.for_everyone(health), open_by_severity=dict(counts))
        blocks = render_status(
            health.freshness,
            open_by_severity=health.open_by_severity,
            stale_after=settings.stale_after,
            outbox=health.outbox,
            leader=health.leader,
            mcp=health.mcp,
            now=now,
            internal=internal,
        )
    return Reply(blocks, "DNA Bot status")


def _sync(settings: Settings, args: list[str], user: str) -> Reply:
    require_admin(settings, user, "only DNA Bot admins can start a sync")
    result = asyncio.run(services.sync(settings))
    return Reply([section(sync_summary(result, secrets_of(settings)))], f"Sync {result.status}")


def _subscribe(settings: Settings, args: list[str], user: str, channel: str) -> Reply:
    target = " ".join(args).strip()
    if not target:
        raise UsageError("What should this channel follow? Usage: `/dna subscribe <dataset|glob|service|domain:X>`")
    from bot.core.authz import require_subscription_rights

    require_subscription_rights(settings, user, target, "subscribe")
    engine = services.engine_for(settings)
    with session_factory(engine).begin() as session:
        sub = subscriptions.subscribe(session, channel, target, user=user or None, now=datetime.now(UTC))
    undo = f"/dna unsubscribe {sub.target if sub.kind != 'domain' else 'domain:' + sub.target}"
    text = (
        f":bell: <#{channel}> now hears about incidents touching {esc(sub.kind)} {code(sub.target)}. "
        f"Undo with {code(undo)}."
    )
    return Reply([section(text)], f"This channel now hears about incidents touching {sub.kind} {sub.target}.")


def _unsubscribe(settings: Settings, args: list[str], user: str, channel: str) -> Reply:
    target = " ".join(args).strip()
    if not target:
        raise UsageError("Unsubscribe from what? Usage: `/dna unsubscribe <dataset|glob|service|domain:X>`")
    from bot.core.authz import require_subscription_rights

    require_subscription_rights(settings, user, target, "unsubscribe")
    engine = services.engine_for(settings)
    with session_factory(engine).begin() as session:
        removed = subscriptions.unsubscribe(session, channel, target)
    shown = clip(target, 200)
    if removed:
        text, plain = (
            f":no_bell: <#{channel}> no longer hears about {code(shown)}.",
            f"This channel no longer hears about {shown}.",
        )
    else:
        text = f":information_source: <#{channel}> was not subscribed to {code(shown)}; nothing changed."
        plain = f"This channel was not subscribed to {shown}; nothing changed."
    return Reply([section(text)], plain)


def _subscriptions(settings: Settings, args: list[str], user: str, channel: str) -> Reply:
    engine = services.engine_for(settings)
    with session_factory(engine)() as session:
        subs = subscriptions.list_for(session, channel)
    if not subs:
        text = f":information_source: <#{channel}> has no subscriptions. Try `/dna subscribe <dataset>`."
    else:
        lines = [f"• {esc(s.kind)} {code(s.target)}" for s in subs[:40]]
        more = f"\n…and {len(subs) - 40} more" if len(subs) > 40 else ""
        text = f"*<#{channel}> follows:*\n" + "\n".join(lines) + more
    return Reply([section(text)], f"{len(subs)} subscription(s)")


def sync_summary(result: Any, secrets: Sequence[str] = ()) -> str:
    """One short mrkdwn paragraph about a finished sync; its error masked for `secrets` and every token shape."""
    if result.status != "succeeded":
        error = esc(clip(scrub(getattr(result, "error", None) or "", secrets), 1500)) or "see `/dna status`"
        return f":x: Sync #{result.run_id} {esc(result.status)}: {error}"
    changes = ", ".join(f"{k}: {v}" for k, v in sorted(result.changes_by_kind.items())) or "no changes"
    opened = len((result.incidents or {}).get("opened") or []) if getattr(result, "incidents", None) else 0
    return (
        f":white_check_mark: Sync #{result.run_id} ({result.mode}) done in {result.duration_seconds:.1f}s: "
        f"{result.entities_seen} assets seen, {changes}; {opened} new incident(s)."
    )


SUBCOMMANDS: dict[str, Callable[[Settings, list[str], str], Reply]] = {
    "show": _show,
    "timeline": _timeline,
    "blast": _blast,
    "why": _why,
    "incidents": _incidents,
    "status": _status,
    "sync": _sync,
}

# Subcommands answered from the store's data: their answers say when that data is stale.
READS_STORE = frozenset({"show", "timeline", "blast", "why", "incidents"})

# Subcommands that act on the channel they are typed in.
CHANNEL_SUBCOMMANDS: dict[str, Callable[[Settings, list[str], str, str], Reply]] = {
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "subscriptions": _subscriptions,
}


def quick_answer(text: str, channel: str = "") -> Reply | None:
    """The answer to `/dna` text that needs no store, no LLM and no worker (help, an unknown subcommand), a
    UsageError for text we cannot read at all, or None: the subcommand's own work must run (on the answer pool)."""
    if len(text) > MAX_TEXT:
        raise UsageError(f"That is {len(text)} characters; `/dna` takes at most {MAX_TEXT}. Try `/dna help`.")
    words = text.split()
    if not words:
        hint = section(":information_source: Tell me what to do, for example `/dna show stg_orders`:")
        return Reply([hint, *render_help()], "DNA Bot help")
    name = words[0].lower()
    if name == "help":
        return Reply(render_help(), "DNA Bot help")
    if name in CHANNEL_SUBCOMMANDS:
        if not channel:
            raise UsageError("Subscriptions belong to a channel; run this in the channel that should follow.")
        return None
    if name not in SUBCOMMANDS:
        hint = section(f":information_source: I don't know {code(clip(words[0], 40))}. Here is what I can do:")
        return Reply([hint, *render_help()], "Unknown /dna subcommand")
    return None


def answer(settings: Settings, text: str, user: str, channel: str = "") -> Reply:
    """Parse `/dna` text and run the one service behind it; UsageError for anything we cannot read."""
    quick = quick_answer(text, channel)
    if quick is not None:
        return quick
    words = text.split()
    name = words[0].lower()
    channel_handler = CHANNEL_SUBCOMMANDS.get(name)
    if channel_handler is not None:
        return channel_handler(settings, words[1:], user, channel)
    reply = SUBCOMMANDS[name](settings, words[1:], user)
    if name in READS_STORE:
        reply = replace(reply, blocks=with_note(reply.blocks, freshness.answer_note(settings)))
    return reply


@reported
def _answer_later(settings: Settings, text: str, user: str, channel: str, body: Any, respond: Any, client: Any) -> None:
    """The slow part of `/dna`, on the answer pool; its failures reach the user as the listener's would."""
    _respond(respond, answer(settings, text, user, channel))


def _respond(respond: Any, reply: Reply) -> None:
    respond(**message(reply.text, reply.blocks), response_type="in_channel" if reply.public else "ephemeral")


def register(app: App, settings: Settings, answers: AnswerPool | None = None) -> None:
    """Register `/dna`: the listener acks first and answers only what needs no worker itself; the rest runs on
    the answer pool, so Slack's 3 s limit never depends on the store, the LLM or how busy the bot is."""
    pool = answers or AnswerPool.from_settings(settings)

    @app.command("/dna")
    @reported
    def dna_command(ack: Any, command: dict[str, Any], body: dict[str, Any], respond: Any, client: Any) -> None:
        ack()
        text = (command.get("text") or "").strip()
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        quick = quick_answer(text, channel)
        if quick is not None:
            _respond(respond, quick)
            return
        slot = pool.reserve(user=user, channel=channel)
        if isinstance(slot, Refused):
            respond(**message(slot.text, [section(esc(slot.text))]), response_type="ephemeral")
            return
        try:
            if text.split()[0].lower() == "sync" and user in admins(settings):
                respond(**message(":hourglass_flowing_sand: Syncing with OpenMetadata…"), response_type="ephemeral")
        except BaseException:
            slot.release()
            raise
        slot.start(
            functools.partial(
                _answer_later,
                settings=settings,
                text=text,
                user=user,
                channel=channel,
                body=body,
                respond=respond,
                client=client,
            )
        )
