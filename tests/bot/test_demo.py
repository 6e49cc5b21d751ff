"""`make demo` end to end: the files it writes, and with Slack settings it posts the incident threads."""

from __future__ import annotations

import json

from rich.console import Console

from bot import demo
from bot.settings import get_settings


def test_the_demo_tells_the_whole_story_and_posts_to_slack_when_configured(tmp_path, slack_api, monkeypatch):
    monkeypatch.setenv("SLACK_API_URL", slack_api.url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack_api.token)
    monkeypatch.setenv("DNABOT_CHANNEL", "C0DEMO")
    get_settings.cache_clear()
    console = Console(record=True, width=120)
    try:
        demo.run(console, str(tmp_path / "out"))
    finally:
        get_settings.cache_clear()
    text = console.export_text()
    assert "SEV1" in text and "order_state AS status" in text
    assert "joined incident" in text and "is resolved: change reverted" in text
    # `why` tells the incident's story: its cause, confidence and column path, then what healed it
    assert "Most likely cause (95%)" in text and "table-level" not in text
    assert "Column path: `warehouse.shop.staging.stg_orders.status` → `warehouse.shop.analytics.orders.status`" in text
    assert "What healed it*: change #3 stg_orders.order_state renamed to status" in text
    out = tmp_path / "out"
    card = json.loads((out / "slack-card.json").read_text())
    assert card["blocks"][0]["type"] == "header"
    assert (out / "slack-card.builder-url.txt").read_text().startswith("https://app.slack.com/block-kit-builder/#")
    assert next(out.glob("incident-*-lineage.png")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    parents = slack_api.parents("C0DEMO")
    assert len(parents) == 2  # the test incident OpenMetadata had open, and the rename
    assert all(p["metadata"]["event_type"] == "dnabot_incident" for p in parents)
