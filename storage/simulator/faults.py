"""Fault injection for the simulator: errors, delays, 429 with Retry-After, and malformed entities."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from storage.simulator.records import SimError


@dataclass
class Fault:
    """One injected fault: requests whose path matches get `status` (after `delay_seconds`), `times` times."""

    id: int
    path_regex: str | None = None
    method: str | None = None
    status: int | None = None
    delay_seconds: float = 0.0
    retry_after: float | None = None
    message: str | None = None
    times: int | None = None
    hits: int = 0
    pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """The fault as JSON (for `GET /admin/faults`)."""
        out = {
            "id": self.id,
            "path_regex": self.path_regex,
            "method": self.method,
            "status": self.status,
            "delay_seconds": self.delay_seconds,
            "retry_after": self.retry_after,
            "times": self.times,
            "hits": self.hits,
        }
        return {k: v for k, v in out.items() if v is not None}


class FaultInjector:
    """The active faults of one app; `match` consumes one use of the first fault that applies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 1
        self.faults: list[Fault] = []
        self.malformed: set[str] = set()

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add a fault from its JSON spec (see the admin API); returns its description."""
        with self._lock:
            malformed = spec.get("malformed")
            if malformed:
                self.malformed.update([malformed] if isinstance(malformed, str) else malformed)
            keys = ("path_regex", "status", "delay_seconds", "retry_after")
            if not any(spec.get(k) is not None for k in keys):
                if not malformed:
                    raise SimError(400, "a fault needs path_regex, status, delay_seconds, retry_after or malformed")
                return {"malformed": sorted(self.malformed)}
            status = spec.get("status")
            if status is None and spec.get("retry_after") is not None:
                status = 429
            try:
                pattern = re.compile(spec["path_regex"]) if spec.get("path_regex") else None
            except re.error as exc:
                raise SimError(400, f"invalid path_regex: {exc}") from exc
            times = spec.get("times")
            fault = Fault(
                id=self._next,
                path_regex=spec.get("path_regex"),
                method=(spec.get("method") or "").upper() or None,
                status=int(status) if status is not None else None,
                delay_seconds=float(spec.get("delay_seconds") or 0.0),
                retry_after=spec.get("retry_after"),
                message=spec.get("message"),
                times=int(times) if times is not None else None,
                pattern=pattern,
            )
            self._next += 1
            self.faults.append(fault)
            return fault.describe()

    def clear(self) -> None:
        """Remove every fault, malformed entities included."""
        with self._lock:
            self.faults.clear()
            self.malformed.clear()

    def describe(self) -> dict[str, Any]:
        """All active faults."""
        with self._lock:
            return {"faults": [f.describe() for f in self.faults], "malformed": sorted(self.malformed)}

    def match(self, method: str, path: str) -> Fault | None:
        """The first fault for this request (one of its `times` is used up)."""
        if not self.faults:
            return None
        with self._lock:
            for fault in self.faults:
                if fault.method and fault.method != method:
                    continue
                if fault.pattern is not None and not fault.pattern.search(path):
                    continue
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None


def broken(etype: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A deliberately malformed entity: no `name`, and `columns` (or `owners`) not a list."""
    out = {k: v for k, v in doc.items() if k != "name"}
    if "columns" in out:
        out["columns"] = {"unexpected": "columns must be a list"}
    else:
        out["owners"] = "not-a-list"
    return out
