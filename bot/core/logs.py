"""Process logging: one stderr handler, readable text or JSON lines, the bound ids on every line, secrets masked.

`configure_logging(settings)` is called once at start-up (calling it again replaces its own handler, so it
never doubles lines). Every record that reaches the handler gets the ids bound with `storage.logctx.bind`
(sync_id, incident_id, replica, request_id) and has each configured secret replaced by "***": in its message
and arguments as the record is made (a log record factory, so other handlers such as uvicorn's or a test's
never see them either), again in a handler filter, then once more in the finished line, which also covers
tracebacks. No line is longer than 2 kB (`LINE_BYTES`): messages are cut as the record is made, and the finished
line (or each line of a traceback) once more. Bolt's, slack_sdk's, APScheduler's and Alembic's loggers write
WARNING and up only (everything at DNABOT_LOG_LEVEL=DEBUG).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import SecretStr
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.engine import make_url

from bot.core.settings import Settings
from storage import logctx
from storage.errors import DnaBotError
from storage.persistence.coordination import replica_id
from storage.redact import secrets_pattern

MASK = "***"
MIN_SECRET_CHARS = 6  # shorter values would mask ordinary words all over the logs
NOISY = ("httpx", "httpx2", "httpcore")  # a line per HTTP request at INFO: kept for DEBUG only
# Bolt logs a refused request's whole body at INFO (an unauthenticated way to fill the disk): WARNING and up only
BOLT = ("slack_bolt", "slack_sdk", "dnabot.slack.bolt")
# APScheduler logs "Running job"/"executed successfully" for every run (~86k lines a day at a 2 s outbox poll);
# Alembic its context ("Context impl SQLiteImpl") each time a migration context opens: DNA Bot's own lines say
# what a tick did and when the store was migrated (`storage.persistence.db.migrate`)
CHATTY = ("apscheduler", "alembic")
LINE_BYTES = 2048  # no line written is longer, whatever a request or an error carried
MESSAGE_BYTES = 1536  # a record's message, leaving room on its line for the time, level, logger and ids
TRUNCATED = " …[truncated]"
_MARK = "_dnabot_handler"


class Redactor:
    """Replaces each secret (as written, URL-encoded or JSON-escaped) with "***" in a text, where it stands whole."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._pattern = secrets_pattern(secrets, MIN_SECRET_CHARS)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in `settings`: each SecretStr field (tokens, keys, signing and webhook secrets) and
    the database password."""
    found = [value.get_secret_value() for _name, value in settings if isinstance(value, SecretStr)]
    if settings.database_url:
        try:
            password = make_url(settings.database_url).password
        except Exception:  # an unparsable URL fails loudly elsewhere; there is no password to hide here
            password = None
        if password:
            found.append(str(password))
    return [s for s in found if s]


def redact_record(record: logging.LogRecord, redact: Redactor) -> None:
    """Mask the secrets in the record's message and arguments (it then carries the finished text, no args)."""
    if not redact:
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: let the handler report it as logging always does
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, ending with a marker when it was cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[: max(limit - len(TRUNCATED.encode()), 0)].decode("utf-8", "ignore") + TRUNCATED


def cap_record(record: logging.LogRecord, limit: int = MESSAGE_BYTES) -> None:
    """Cut the record's message to `limit` bytes (it then carries the finished text, no args)."""
    if isinstance(record.msg, str) and not record.args and len(record.msg) * 4 <= limit:
        return  # short enough whatever its characters: no need to encode it
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: let the handler report it as logging always does
        return
    short = truncate(message, limit)
    if short != message:
        record.msg, record.args = short, None


class RedactFilter(logging.Filter):
    """Masks the secrets in a record's message and arguments, and caps its length."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self.redact)
        cap_record(record)
        return True


class _RedactingFactory:
    """A log record factory that masks secrets and caps the message as each record is made, before any handler
    sees it."""

    def __init__(self, base: Callable[..., logging.LogRecord], redact: Redactor) -> None:
        self.base = base
        self.redact = redact

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        redact_record(record, self.redact)
        cap_record(record)
        return record


def _install_factory(redact: Redactor) -> None:
    factory = logging.getLogRecordFactory()
    if isinstance(factory, _RedactingFactory):
        factory.redact = redact  # configured again: the new secrets replace the old ones
    else:
        logging.setLogRecordFactory(_RedactingFactory(factory, redact))


class ContextFilter(logging.Filter):
    """Copies the ids bound with `storage.logctx.bind` onto the record (an explicit `extra=` value wins), and
    `defaults` (this replica's id) where nothing is bound: threads started by libraries do not inherit ids."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.defaults = defaults or {}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (self.defaults | logctx.current()).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _utc_iso(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2025-06-01T09:00:00.123Z INFO storage.sync.run: message [sync_id=12 incident_id=3]`, secrets masked."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in logctx.FIELDS if getattr(record, k, None) is not None)
        if ids:
            head, sep, tail = line.partition("\n")  # the ids go on the message line, before any traceback
            line = f"{head} [{ids}]{sep}{tail}"
        return "\n".join(truncate(part, LINE_BYTES) for part in self.redact(line).split("\n"))


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: timestamp (UTC ISO), level, logger, message, the bound ids, any `extra=`."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "color_message", "taskName"],  # uvicorn's ANSI copy; 3.12+ task
        )
        self.redact = redact

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = _utc_iso(record)  # first, so each line starts with its time
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        """The JSON line, its longest text fields (message, traceback, an extra) cut until it fits LINE_BYTES."""
        line = super().serialize_log_record(log_data)
        while len(line.encode()) > LINE_BYTES:
            texts = [(len(v), k) for k, v in log_data.items() if isinstance(v, str) and len(v) > len(TRUNCATED)]
            if not texts:
                return truncate(line, LINE_BYTES)  # no text left to cut (a huge non-text extra): not JSON, but short
            size, key = max(texts)
            log_data[key] = log_data[key][: max(size // 2 - len(TRUNCATED), 0)] + TRUNCATED
            line = super().serialize_log_record(log_data)
        return line


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Set the root level from DNABOT_LOG_LEVEL and (re)install DNA Bot's stderr handler (DNABOT_LOG_FORMAT);
    JSON lines always name the replica (DNABOT_REPLICA_ID, else host:pid), text lines when it is set."""
    level = logging.getLevelName(settings.log_level.strip().upper())
    if not isinstance(level, int):
        raise DnaBotError(f"DNABOT_LOG_LEVEL={settings.log_level!r} is not a level (DEBUG, INFO, WARNING, ERROR)")
    redact = Redactor(settings_secrets(settings))
    _install_factory(redact)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter(redact) if settings.log_format == "json" else TextFormatter(redact))
    # JSON lines always name their replica (they are read merged); text lines only when one is configured
    replica = settings.replica_id or (replica_id() if settings.log_format == "json" else None)
    handler.addFilter(ContextFilter({"replica": replica} if replica else None))
    handler.addFilter(RedactFilter(redact))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in (*NOISY, *BOLT, *CHATTY):
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else max(level, logging.WARNING))
    return handler
