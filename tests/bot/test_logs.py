"""What an operator reads in the logs: JSON or text lines carrying the sync and incident ids, never a secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from bot.core.logs import configure_logging
from bot.core.settings import Settings
from storage import logctx

SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-bot-token-secret",
    "SLACK_APP_TOKEN": "xapp-1-A111-app-token-secret",
    "SLACK_SIGNING_SECRET": "signing-secret-8f3a9c",
    "OPENMETADATA_TOKEN": "eyJhbGciOiJIUzI1NiJ9.om-token-secret",
    "OPENAI_API_KEY": "sk-openai-key-secret-4242",
    "TAVILY_API_KEY": "tvly-tavily-key-secret",
    "BRIGHTDATA_API_TOKEN": "bd-brightdata-token-secret",
    "OPENMETADATA_WEBHOOK_SECRET": "webhook-secret-with/slash+plus",
}
DB_PASSWORD = "db-pass@word-secret"
log = logging.getLogger("dnabot.test.logs")


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., io.StringIO]]:
    """`logs(DNABOT_LOG_FORMAT="json")` configures logging with every secret set; returns what it writes."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    factory = logging.getLogRecordFactory()
    for name in ("DNABOT_REPLICA_ID", "DNABOT_LOG_FORMAT", "DNABOT_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name, secret in SECRETS.items():
        monkeypatch.setenv(name, secret)
    monkeypatch.setenv("DATABASE_URL", "postgresql://dnabot:db-pass%40word-secret@127.0.0.1:5432/dnabot")

    def configure(**env: str) -> io.StringIO:
        for name, val in env.items():
            monkeypatch.setenv(name, val)
        stream = io.StringIO()
        configure_logging(Settings(), stream=stream)
        return stream

    yield configure
    for handler in [h for h in root.handlers if h not in saved[1]]:
        root.removeHandler(handler)
    root.setLevel(saved[0])
    logging.setLogRecordFactory(factory)


def leaked(text: str) -> list[str]:
    return [s for s in [*SECRETS.values(), DB_PASSWORD, "db-pass%40word-secret"] if s in text]


def test_json_lines_carry_the_bound_sync_and_incident_ids(logs) -> None:
    out = logs(DNABOT_LOG_FORMAT="json", DNABOT_LOG_LEVEL="info", DNABOT_REPLICA_ID="replica-a")

    with logctx.bind(sync_id=41):
        log.info("sync started")
        with logctx.bind(incident_id=7):
            log.warning("incident %s opened with severity %s", 7, "SEV2")
        log.debug("below the level, not written")
    log.info("outside any sync")

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "sync started",
        "incident 7 opened with severity SEV2",
        "outside any sync",
    ]
    assert lines[1] | {"timestamp": None} == {
        "timestamp": None,
        "level": "WARNING",
        "logger": "dnabot.test.logs",
        "message": "incident 7 opened with severity SEV2",
        "sync_id": 41,
        "incident_id": 7,
        "replica": "replica-a",
    }
    assert lines[0]["sync_id"] == 41 and "incident_id" not in lines[0]
    assert not {"sync_id", "incident_id"} & set(lines[2]) and lines[2]["replica"] == "replica-a"
    assert lines[0]["timestamp"].endswith("Z") and lines[0]["timestamp"][10] == "T"


def test_text_lines_are_readable_and_show_the_bound_ids(logs) -> None:
    out = logs(DNABOT_LOG_FORMAT="text")

    with logctx.bind(sync_id=41, incident_id=7):
        log.info("card posted")
    log.info("idle")
    with logctx.bind(request_id="Ev0123"):
        log.info("event handled")

    first, second, third = out.getvalue().splitlines()
    assert first.endswith(" INFO dnabot.test.logs: card posted [sync_id=41 incident_id=7]")
    assert second.endswith(" INFO dnabot.test.logs: idle")
    assert third.endswith(" INFO dnabot.test.logs: event handled [request_id=Ev0123]")


def test_a_configured_replica_id_names_every_line_even_from_threads_that_inherit_nothing(logs) -> None:
    out = logs(DNABOT_LOG_FORMAT="text", DNABOT_REPLICA_ID="replica-b")

    worker = threading.Thread(target=log.info, args=("tick from a scheduler thread",))
    worker.start()
    worker.join()

    assert out.getvalue().splitlines()[0].endswith(": tick from a scheduler thread [replica=replica-b]")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_reaches_the_log_in_messages_arguments_extras_or_tracebacks(logs, fmt: str) -> None:
    out = logs(DNABOT_LOG_FORMAT=fmt)

    for name, secret in SECRETS.items():
        log.info("%s is %s", name, secret)
        log.info(f"inline {name}={secret}")
        log.info("as a mapping %(value)s", {"value": secret})
        log.info("in an extra field", extra={"detail": secret})
    log.info("url %s", "postgresql://dnabot:db-pass%40word-secret@db/dnabot")
    try:
        raise RuntimeError(f"Slack said no to {SECRETS['SLACK_BOT_TOKEN']} and {DB_PASSWORD}")
    except RuntimeError:
        log.exception("call failed")

    text = out.getvalue()
    assert leaked(text) == []
    per_secret = 4 if fmt == "json" else 3  # text lines leave `extra=` fields out
    assert text.count("***") == per_secret * len(SECRETS) + 3
    assert "SLACK_BOT_TOKEN is ***" in (text if fmt == "text" else json.loads(text.splitlines()[0])["message"])


def test_other_handlers_such_as_pytests_capture_see_the_masked_text_too(logs, caplog) -> None:
    logs(DNABOT_LOG_FORMAT="text")

    with caplog.at_level(logging.INFO):
        log.info("token %s", SECRETS["SLACK_BOT_TOKEN"])

    assert caplog.messages == ["token ***"]


def test_configuring_twice_keeps_one_handler_and_writes_each_line_once(logs) -> None:
    logs(DNABOT_LOG_FORMAT="text")
    out = logs(DNABOT_LOG_FORMAT="json")

    log.warning("once")

    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["once"]
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_dnabot_handler", False)]
    assert len(ours) == 1


def test_bound_ids_follow_tasks_started_inside_and_end_with_the_block() -> None:
    async def seen_by_a_task() -> dict[str, object]:
        return logctx.current()

    async def main() -> tuple[dict[str, object], dict[str, object]]:
        with logctx.bind(sync_id=3, incident_id=None):
            inside = await asyncio.create_task(seen_by_a_task())
        return inside, logctx.current()

    inside, after = asyncio.run(main())
    assert inside == {"sync_id": 3} and after == {}
    with pytest.raises(TypeError):
        logctx.bind(user="U1").__enter__()


def test_an_unknown_log_level_is_refused_with_its_name(logs) -> None:
    with pytest.raises(Exception, match="DNABOT_LOG_LEVEL='chatty'"):
        logs(DNABOT_LOG_LEVEL="chatty")


@pytest.fixture
def bolt_levels() -> Iterator[None]:
    names = ("slack_bolt", "slack_sdk", "dnabot.slack.bolt", "slack_bolt.RequestVerification")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_bolt_and_slack_sdk_write_warnings_only_even_at_info(logs, bolt_levels) -> None:
    """Bolt logs a refused request's whole body at INFO: anyone could fill the disk with unsigned POSTs."""
    out = logs(DNABOT_LOG_FORMAT="text", DNABOT_LOG_LEVEL="info")

    logging.getLogger("slack_bolt.RequestVerification").info("Invalid request signature detected (body: junk)")
    logging.getLogger("dnabot.slack.bolt").info("bolt app chatter")
    logging.getLogger("slack_sdk.web.base_client").info("sdk chatter")
    logging.getLogger("dnabot.slack.bolt").warning("Unhandled request")
    log.info("ours")

    written = out.getvalue()
    assert "Unhandled request" in written and "ours" in written
    assert "junk" not in written and "chatter" not in written


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_line_is_over_2_kb_whatever_a_message_argument_extra_or_traceback_carries(logs, fmt) -> None:
    out = logs(DNABOT_LOG_FORMAT=fmt)

    log.warning("body: %s", "é" * 5000)
    log.warning("x" * 100_000, extra={"request": "r" * 10_000})
    try:
        raise ValueError("\u2603" * 3000)
    except ValueError:
        log.exception("refused %s", "q" * 3000)

    lines = out.getvalue().splitlines()
    assert lines and all(len(line.encode()) <= 2048 for line in lines), [len(line.encode()) for line in lines]
    assert "[truncated]" in out.getvalue()
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert len(records) == 3 and records[0]["message"].startswith("body: éé")
        assert "ValueError" in records[2]["exc_info"]
    else:
        assert lines[0].endswith("…[truncated]") and "body: éé" in lines[0]
        assert any(line.startswith("ValueError: ☃☃") for line in lines)
