"""Stable Slack action ids and the small versioned JSON that carries context in button values and modals."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.core.slack_text import units

VALUE_VERSION = 1
MAX_VALUE_CHARS = 2000  # Slack's limit on a button value; private_metadata allows 3000
_RESERVED = ("v", "k")


class ActionId(StrEnum):
    """Every action_id / callback_id the bot renders. Slack refuses a message or view in which two elements share
    an action_id, so a button shown several times (one per suggestion, per row) is rendered as `nth(i)`
    (`dna_show:0`, `dna_show:1`, …) and listeners match `pattern`; what a button is about rides in its `value`."""

    # incident card
    ACK = "incident_ack"
    ASSIGN = "incident_assign"
    SNOOZE = "incident_snooze"
    RESOLVE = "incident_resolve"
    REOPEN = "incident_reopen"
    SIMULATE_FIX = "incident_simulate_fix"
    OPEN_IN_OM = "incident_open_in_om"
    # resolve modal: the view's callback_id, and its two inputs (block_id == action_id)
    RESOLVE_MODAL = "incident_resolve_modal"
    RESOLVE_REASON = "incident_resolve_reason"
    RESOLVE_COMMENT = "incident_resolve_comment"
    # lists, App Home and help
    SHOW_INCIDENT = "incident_show"
    SHOW_DNA = "dna_show"
    HOME_REFRESH = "home_refresh"
    HELP_OPEN_DOCS = "help_open_docs"

    def nth(self, index: int | str) -> str:
        """This action's id for its `index`-th element in one message or view: `dna_show:3`."""
        return f"{self.value}:{index}"

    @property
    def pattern(self) -> re.Pattern[str]:
        """What a listener registers: this id alone or any `nth` of it (`^dna_show(:|$)`)."""
        return re.compile(rf"^{re.escape(self.value)}(:|$)")


SNOOZE_CHOICES: dict[str, str] = {"1h": "1 hour", "1d": "1 day", "1w": "1 week"}
RESOLVE_REASONS: dict[str, str] = {
    "fixed": "Fixed",
    "false_positive": "False positive",
    "duplicate": "Duplicate",
    "wont_fix": "Won't fix",
    "other": "Other",
}


@dataclass(frozen=True, slots=True)
class ActionValue:
    """A decoded action value: what it is about (`kind`), its fields, and the format version."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    version: int = VALUE_VERSION

    @property
    def id(self) -> int | None:
        """The incident id (or other numeric id) the value points at, when it has one."""
        value = self.data.get("id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def encode_value(kind: str, **data: Any) -> str:
    """Compact versioned JSON such as `{"v":1,"k":"incident","id":7}`; ValueError if it would not fit 2000 chars."""
    if not kind or not isinstance(kind, str):
        raise ValueError("action value kind must be a non-empty string")
    clash = [k for k in data if k in _RESERVED]
    if clash:
        raise ValueError(f"action value keys {clash} are reserved")
    payload = {"v": VALUE_VERSION, "k": kind, **{k: v for k, v in data.items() if v is not None}}
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"action value is not JSON-able: {err}") from err
    if units(text) > MAX_VALUE_CHARS:
        raise ValueError(f"action value is {units(text)} chars; Slack allows {MAX_VALUE_CHARS}")
    return text


def decode_value(text: Any) -> ActionValue:
    """Parse a value made by `encode_value`; ValueError on anything malformed or of an unknown version."""
    if not isinstance(text, str) or not text:
        raise ValueError("action value is missing or not a string")
    if len(text) > 3000:
        raise ValueError("action value is too long to be one of ours")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"action value is not JSON: {err.msg}") from err
    if not isinstance(payload, dict):
        raise ValueError("action value is not a JSON object")
    version = payload.pop("v", None)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError("action value has no version")
    if version != VALUE_VERSION:
        raise ValueError(f"action value version {version} is unknown (this bot reads version {VALUE_VERSION})")
    kind = payload.pop("k", None)
    if not isinstance(kind, str) or not kind:
        raise ValueError("action value has no kind")
    if "id" in payload and (isinstance(payload["id"], bool) or not isinstance(payload["id"], int)):
        raise ValueError("action value id must be an integer")
    return ActionValue(kind=kind, data=payload, version=version)


@dataclass(frozen=True, slots=True)
class ResolveSubmission:
    """What the resolve modal sent back: the incident it is about, the reason code and the optional comment."""

    target: ActionValue
    reason: str
    comment: str | None


def read_resolve_submission(view: Mapping[str, Any]) -> ResolveSubmission:
    """Read a `view_submission` payload's view of the resolve modal; ValueError when it is not one of ours."""
    if view.get("callback_id") != ActionId.RESOLVE_MODAL:
        raise ValueError("not the resolve modal")
    target = decode_value(view.get("private_metadata"))
    values = (view.get("state") or {}).get("values") or {}
    picked = ((values.get(ActionId.RESOLVE_REASON) or {}).get(ActionId.RESOLVE_REASON) or {}).get("selected_option")
    reason = (picked or {}).get("value")
    if reason not in RESOLVE_REASONS:
        raise ValueError(f"unknown resolve reason {reason!r}")
    comment = ((values.get(ActionId.RESOLVE_COMMENT) or {}).get(ActionId.RESOLVE_COMMENT) or {}).get("value")
    return ResolveSubmission(target=target, reason=reason, comment=(comment or "").strip() or None)
