"""The doctor's report: one `Check` per line (ok / warn / fail / skip, a detail, the fix), and its helpers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)
CHECK_SECONDS = 5.0  # one network call's time box; a group of checks gets a few of these
MAX_DETAIL = 300
MIGRATE = "run `dnabot migrate` (`dnabot serve` also migrates when it starts)"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report: `fix` says what to do when the status is not ok."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON (`--json`): name, status, detail, fix."""
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, FAIL, detail, fix)


def skip(name: str, detail: str) -> Check:
    return Check(name, SKIP, detail)


def blocked(checks: list[Check]) -> bool:
    """Whether anything reported keeps `dnabot serve` from working (exit code 1)."""
    return any(c.status == FAIL for c in checks)


def short(exc: BaseException) -> str:
    """One line for an exception: its message's first line (or its type), never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
