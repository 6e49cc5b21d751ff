"""Who sees what, over real HTTP: incidents routed to a private channel are listed only to its members and admins,
`/dna status` shows internal addresses to admins only, and a secret in an OpenMetadata error never reaches Slack.

The incident here is the demo's renamed `stg_orders.status`; DNABOT_CHANNEL routes it. The loopback Slack knows
which channels are private and who is in them (`conversations.info`, `conversations.members`, paged).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from bot.core import services, visibility
from bot.core.settings import get_settings
from bot.runtime.http import create_http_app
from simulator import run_in_thread
from storage.openmetadata.fqn import url_segment
from storage.persistence import db
from storage.persistence.models import SyncRun
from storage.persistence.store import last_runs
from tests.bot.test_app_http import ADMIN, SECRET, STG_ORDERS, Bot, texts
from tests.fakes.slack_signing import app_home_opened, app_mention_event, slash_command
from tests.fakes.slack_state import BOT

NO_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG")
PRIVATE, PUBLIC = "GPRIVATE1", "CPUBLIC1"
MEMBER, OUTSIDER = "UMEMBER", "UOUTSIDER"
HIDDEN = "incident(s) hidden: routed to private channels you are not in"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture
def start(slack_api, om_demo, tmp_path, monkeypatch) -> Iterator[Callable[..., Bot]]:
    """`start(channel)` runs the bot over HTTP with incidents routed to `channel`, after one good sync."""
    for var in NO_KEYS:
        monkeypatch.delenv(var, raising=False)
    visibility.DIRECTORY.clear()  # channel facts cached by an earlier test in this process are not this one's
    handles: list[tuple[httpx.Client, Any]] = []

    def run(channel: str, **env: str) -> Bot:
        base = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
            "OPENMETADATA_URL": om_demo.url,
            "OPENMETADATA_TOKEN": om_demo.token,
            "SLACK_API_URL": slack_api.url,
            "SLACK_BOT_TOKEN": slack_api.token,
            "SLACK_SIGNING_SECRET": SECRET,
            "DNABOT_ADMINS": ADMIN,
            "DNABOT_CHANNEL": channel,
            "DNABOT_OM_MAX_RETRIES": "0",
        }
        for name, value in (base | env).items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        get_settings.cache_clear()
        settings = get_settings()
        asyncio.run(services.sync(settings))
        handle = run_in_thread(create_http_app(settings))
        client = httpx.Client(trust_env=False, timeout=10)
        handles.append((client, handle))
        return Bot(handle.url, settings, slack_api, om_demo, client)

    yield run
    for client, handle in handles:
        client.close()
        handle.stop()
    visibility.DIRECTORY.clear()
    get_settings.cache_clear()


def channel(slack, channel_id: str, *, private: bool, members: list[str]) -> None:
    with slack.state.cond:
        slack.state.channels[channel_id] = {"is_private": private, "members": members}


def ask(bot: Bot, text: str, rid: str, user: str, count: int = 1) -> dict:
    """`/dna <text>` typed by `user`; the last of the `count` answers that come back through the response_url."""
    assert bot.post(slash_command(text, user=user, response_url=bot.slack.response_url(rid))).status_code == 200
    replies = bot.slack.wait_for(lambda: (r := bot.slack.responses(rid)) and len(r) >= count and r, 30)
    return replies[-1]


def listed(reply: dict, incident_id: int) -> bool:
    return f"*#{incident_id}*" in texts(reply["blocks"])


# ------------------------------------------------------------------------------------------------ incidents


def test_an_incident_routed_to_a_private_channel_is_listed_only_to_its_members_and_admins(start):
    bot = start(PRIVATE)
    crowd = [f"U{n:05d}" for n in range(2300)]  # three pages of members: the member is on the last one
    channel(bot.slack, PRIVATE, private=True, members=[BOT["user_id"], *crowd, MEMBER])
    incident_id = bot.rename_status()

    outsider = ask(bot, "incidents all", "out", OUTSIDER)
    assert not listed(outsider, incident_id) and STG_ORDERS not in texts(outsider["blocks"])
    assert HIDDEN in texts(outsider["blocks"]) and HIDDEN in outsider["text"]
    opened = ask(bot, "incidents open", "out-open", OUTSIDER)
    assert not listed(opened, incident_id) and HIDDEN in texts(opened["blocks"])

    member = ask(bot, "incidents all", "mem", MEMBER)
    assert listed(member, incident_id) and "hidden" not in texts(member["blocks"])
    pages = [c for c in bot.slack.calls("conversations.members") if c.args.get("channel") == PRIVATE]
    assert len(pages) >= 3 and all(c.args.get("cursor") for c in pages[1:3])  # read page by page, as Slack pages

    admin = ask(bot, "incidents all", "adm", ADMIN)
    assert listed(admin, incident_id) and "hidden" not in texts(admin["blocks"])


def test_an_incident_in_a_public_channel_is_listed_to_everyone(start):
    bot = start(PUBLIC)
    channel(bot.slack, PUBLIC, private=False, members=[BOT["user_id"]])
    incident_id = bot.rename_status()
    reply = ask(bot, "incidents all", "pub", OUTSIDER)
    assert listed(reply, incident_id) and "hidden" not in texts(reply["blocks"])


def test_when_slack_cannot_say_who_is_in_the_channel_private_incidents_stay_hidden(start):
    bot = start(PRIVATE)
    channel(bot.slack, PRIVATE, private=True, members=[MEMBER])  # the bot was never invited: channel_not_found
    incident_id = bot.rename_status()
    reply = ask(bot, "incidents all", "closed", MEMBER)
    assert not listed(reply, incident_id) and HIDDEN in texts(reply["blocks"])
    assert any(c.args.get("channel") == PRIVATE for c in bot.slack.calls("conversations.info"))
    assert listed(ask(bot, "incidents all", "closed-admin", ADMIN), incident_id)


def test_without_the_groups_read_scope_private_incidents_stay_hidden(start):
    bot = start(PRIVATE)
    channel(bot.slack, PRIVATE, private=True, members=[BOT["user_id"], MEMBER])
    with bot.slack.state.cond:
        bot.slack.state.scopes.discard("groups:read")  # missing_scope
    incident_id = bot.rename_status()
    reply = ask(bot, "incidents all", "scope", MEMBER)
    assert not listed(reply, incident_id) and HIDDEN in texts(reply["blocks"])


def test_app_home_lists_a_private_channels_incident_only_to_its_members(start):
    bot = start(PRIVATE)
    channel(bot.slack, PRIVATE, private=True, members=[BOT["user_id"], MEMBER])
    incident_id = bot.rename_status()
    for user in (OUTSIDER, MEMBER):
        assert bot.post(app_home_opened(user)).status_code == 200
    outsider = texts(bot.slack.wait_for(lambda: bot.slack.views_published(OUTSIDER), 15)[-1]["blocks"])
    member = texts(bot.slack.wait_for(lambda: bot.slack.views_published(MEMBER), 15)[-1]["blocks"])
    assert f"*#{incident_id}*" not in outsider and HIDDEN in outsider
    assert f"*#{incident_id}*" in member and "hidden" not in member


def test_the_digest_lists_an_incident_only_in_the_channel_its_thread_lives_in(bot_env, om_demo, slack_api):
    from datetime import UTC, datetime

    from bot.core.routing import Router
    from bot.core.slack_client import build_client
    from bot.delivery.digest import post_digests
    from storage.persistence import threads

    settings = bot_env(DNABOT_CHANNEL=PUBLIC)
    asyncio.run(services.sync(settings))
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", {"newName": "state"})
    [incident_id] = asyncio.run(services.sync(settings)).incidents["opened"]
    now = datetime.now(UTC)
    with db.session_factory(services.engine_for(settings)).begin() as session:  # posted while routed privately
        threads.record_thread(session, incident_id, PRIVATE, "1.000001", version=1, last_event_id=None, now=now)
    posted = post_digests(settings, build_client(settings), Router([], PUBLIC), now=now)  # routing changed since
    assert PRIVATE in posted
    [public] = slack_api.messages(PUBLIC)
    [private] = slack_api.messages(PRIVATE)
    assert f"#{incident_id}" not in texts(public["blocks"]) and f"#{incident_id}" in texts(private["blocks"])


# ------------------------------------------------------------------------------------------------ status


def fail_a_sync(bot: Bot, **changes: object) -> str:
    """One more sync with these settings changes (e.g. OpenMetadata not listening); returns its error."""
    result = asyncio.run(services.sync(bot.settings.model_copy(update=changes)))
    assert result.status == "failed"
    return result.error


def test_status_shows_internal_addresses_to_admins_only(start):
    bot = start(PUBLIC)
    fail_a_sync(bot, openmetadata_url=CLOSED)
    everyone = texts(ask(bot, "status", "st-user", OUTSIDER)["blocks"])
    assert "Latest run" in everyone and "cannot reach OpenMetadata" in everyone  # the same status…
    for address in ("127.0.0.1", ":9/", "http://", bot.om.url, "sqlite:"):  # …without where things live
        assert address not in everyone, address
    admin = texts(ask(bot, "status", "st-admin", ADMIN)["blocks"])
    assert "127.0.0.1:9" in admin and bot.om.url in admin and "Admins only" in admin


def test_status_counts_only_the_open_incidents_the_user_may_see(start):
    bot = start(PRIVATE)
    channel(bot.slack, PRIVATE, private=True, members=[BOT["user_id"], MEMBER])
    bot.rename_status()
    assert "none :tada:" in texts(ask(bot, "status", "cnt-out", OUTSIDER)["blocks"])
    for user in (MEMBER, ADMIN):
        shown = texts(ask(bot, "status", f"cnt-{user}", user)["blocks"])
        assert "Open incidents" in shown and "none :tada:" not in shown, user


# ------------------------------------------------------------------------------------------------ secrets


def test_a_secret_in_an_openmetadata_error_body_never_reaches_the_sync_reply_or_the_store(start):
    bot = start(PUBLIC)
    body = f"gateway echo: signing={SECRET} slack {bot.slack.token}"  # what a chatty proxy might answer
    bot.om.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/", "status": 400, "message": body})
    try:
        reply = ask(bot, "sync", "sync", ADMIN, count=2)
    finally:
        bot.om.admin("DELETE", "/admin/faults")
    shown = texts(reply["blocks"]) + reply["text"]
    assert "failed" in shown and "gateway echo" in shown
    engine = services.engine_for(bot.settings)
    with db.session_factory(engine)() as session:
        stored = last_runs(session, 1)[0].error or ""
    runs = [r.error or "" for r in services.runs(bot.settings, 5)]
    for text in (shown, stored, *runs):
        assert SECRET not in text and bot.slack.token not in text
    assert "gateway echo" in stored


def test_a_secret_stored_before_masking_existed_is_masked_when_shown(start):
    bot = start(PUBLIC)
    engine = services.engine_for(bot.settings)
    with db.session_factory(engine).begin() as session:
        run = session.get(SyncRun, last_runs(session, 1)[0].id)
        run.status, run.error = "failed", f"OMUnavailable: old row with {SECRET} in it"
    admin = texts(ask(bot, "status", "old", ADMIN)["blocks"])
    assert "old row with" in admin and SECRET not in admin
    assert all(SECRET not in (r.error or "") for r in services.runs(bot.settings, 5))


# ------------------------------------------------------------------------------------------------ the parts


def test_the_loopback_slack_pages_members_and_refuses_like_slack(slack_api):
    channel(slack_api, PRIVATE, private=True, members=[BOT["user_id"], MEMBER, OUTSIDER])
    channel(slack_api, "GNOTIN", private=True, members=[MEMBER])

    def call(method: str, **args: Any) -> dict:
        headers = {"Authorization": f"Bearer {slack_api.token}"}
        return httpx.post(f"{slack_api.url}{method}", headers=headers, data=args).json()

    first = call("conversations.members", channel=PRIVATE, limit=2)
    assert first["ok"] and first["members"] == [BOT["user_id"], MEMBER]
    cursor = first["response_metadata"]["next_cursor"]
    last = call("conversations.members", channel=PRIVATE, limit=2, cursor=cursor)
    assert last["members"] == [OUTSIDER] and last["response_metadata"]["next_cursor"] == ""
    assert call("conversations.members", channel=PRIVATE, cursor="not-a-cursor")["error"] == "invalid_cursor"
    assert call("conversations.members", channel=PRIVATE, limit=1001)["error"] == "invalid_limit"
    assert call("conversations.info", channel=PRIVATE)["channel"]["is_private"] is True
    assert call("conversations.info", channel="CANY")["channel"]["is_private"] is False  # an undeclared channel
    assert call("conversations.info", channel="GNOTIN")["error"] == "channel_not_found"  # the bot is not in it
    assert call("conversations.members", channel="GNOTIN")["error"] == "channel_not_found"
    with slack_api.state.cond:
        slack_api.state.scopes.discard("groups:read")
    refused = call("conversations.members", channel=PRIVATE)
    assert refused["error"] == "missing_scope" and refused["needed"] == "groups:read"


def test_what_slack_says_about_a_channel_is_cached_for_a_short_while(slack_api):
    from slack_sdk import WebClient

    channel(slack_api, PRIVATE, private=True, members=[BOT["user_id"], MEMBER])
    now = [0.0]
    directory = visibility.ChannelDirectory(ttl=60, clock=lambda: now[0])
    client = WebClient(token=slack_api.token, base_url=slack_api.url)
    assert MEMBER in (directory.channel(client, PRIVATE).members or ())
    channel(slack_api, PRIVATE, private=True, members=[BOT["user_id"]])  # the member leaves
    now[0] = 59
    assert MEMBER in (directory.channel(client, PRIVATE).members or ())  # still the cached answer
    now[0] = 61
    assert MEMBER not in (directory.channel(client, PRIVATE).members or ())
    assert len(slack_api.calls("conversations.info")) == 2


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "OpenMetadata is unavailable at http://om.internal:8585/api/: GET /v1/tables failed",
            "OpenMetadata is unavailable at [internal address]: GET /v1/tables failed",
        ),
        (
            "no route to 10.0.4.17, nor db.prod:5432 nor [::1]:8080.",
            "no route to [internal address], nor [internal address] nor [internal address].",
        ),
        (
            "HTTP 503 at 2026-12-03T07:29:51Z on 1.7.0 by replica-b",
            "HTTP 503 at 2026-12-03T07:29:51Z on 1.7.0 by replica-b",
        ),
    ],
)
def test_non_admins_see_errors_without_internal_addresses_and_nothing_else_changed(text, shown):
    from bot.core.freshness import hide_internal

    assert hide_internal(text) == shown


# ------------------------------------------------------------------------------------------------ why answers


def mention(bot: Bot, channel_id: str, text: str) -> dict:
    """Mention the bot in `channel_id`; the placeholder once it became the answer."""
    ts = bot.slack.user_message(channel_id, f"<@UBOT> {text}")
    body = app_mention_event(f"<@UBOT> {text}", channel=channel_id, ts=ts, user=MEMBER)
    assert bot.post(body).status_code == 200

    def answered() -> dict | None:
        done = [m for m in bot.slack.thread(channel_id, ts) if m["ts"] != ts and "Looking into it" not in m["text"]]
        return done[-1] if done else None

    return bot.slack.wait_for(answered, 30)


def test_a_why_answer_names_a_private_channels_incident_only_to_those_who_may_see_it(start):
    bot = start(PRIVATE)
    channel(bot.slack, PRIVATE, private=True, members=[BOT["user_id"], MEMBER])
    channel(bot.slack, PUBLIC, private=False, members=[BOT["user_id"], MEMBER, OUTSIDER])
    incident_id = bot.rename_status()
    named = f"incident #{incident_id}"

    assert named in texts(ask(bot, "why stg_orders", "why-mem", MEMBER)["blocks"])
    assert named not in texts(ask(bot, "why stg_orders", "why-out", OUTSIDER)["blocks"])
    # a mention is read by the whole channel: named in the private channel, not in a public one (the asker may see it)
    assert named in texts(mention(bot, PRIVATE, "why did stg_orders break?")["blocks"])
    assert named not in texts(mention(bot, PUBLIC, "why did stg_orders break?")["blocks"])
