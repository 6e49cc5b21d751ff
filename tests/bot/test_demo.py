"""`make demo` end to end: the files it writes, and with Slack settings it posts the incident threads."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from bot.cli import demo
from bot.core.settings import get_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _is_step(line: str) -> bool:
    """A demo section rule: `──── 7. The incident … ────`."""
    body = line.strip("─ ")
    head = body.split(".", 1)[0]
    return head.isdigit() and body[len(head) : len(head) + 2] == ". "


def _readme_steps() -> int:
    """How many numbered steps the README's quick start lists for the demo."""
    text = README.read_text(encoding="utf-8")
    part = text[text.index("It walks through") : text.index("The JSON of each step")]
    return sum(1 for line in part.splitlines() if line.split(".", 1)[0].isdigit())


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
    # step 7 names the incident it shows, and the README lists the demo's steps one for one
    shown = json.loads((tmp_path / "out" / "incident.json").read_text())["incident"]["id"]
    assert f"7. The incident DNA Bot opened (dnabot incidents; dnabot incident {shown})" in text
    steps = [int(line.split(".", 1)[0].strip("─ ")) for line in text.splitlines() if _is_step(line)]
    assert steps == list(range(1, 12))
    assert _readme_steps() == 11
    # the closing list names every file the demo wrote, the Slack JSON included
    closing = text[text.index("Files in ") :]
    for path in (tmp_path / "out").iterdir():
        assert path.name in closing or path.name.endswith((".lock", "-shm", "-wal"))
    assert "slack-thread.json" in closing and "dnabot.db" in closing
    # `why` tells the incident's story: its cause, confidence and column path, then what healed it
    assert "Most likely cause (95%)" in text and "table-level" not in text
    assert "Column path: warehouse.shop.staging.stg_orders.status → warehouse.shop.analytics.orders.status" in text
    assert "What healed it: change #3 stg_orders.order_state renamed to status" in text
    assert "*Customer health*" not in text  # the card preview is terminal text, not Slack markup
    out = tmp_path / "out"
    card = json.loads((out / "slack-card.json").read_text())
    assert card["blocks"][0]["type"] == "header"
    assert (out / "slack-card.builder-url.txt").read_text().startswith("https://app.slack.com/block-kit-builder/#")
    assert next(out.glob("incident-*-lineage.png")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    parents = slack_api.parents("C0DEMO")
    assert len(parents) == 2  # the test incident OpenMetadata had open, and the rename
    assert all(p["metadata"]["event_type"] == "dnabot_incident" for p in parents)
