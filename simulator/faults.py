"""Fault injection for the simulator: errors, delays, 429 with Retry-After, bad bodies and malformed entities."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from simulator.records import SimError


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
    lineage_of: frozenset[str] = frozenset()  # only `GET /v1/lineage/{type}/name/{fqn}` of these FQNs
    body: Any = None  # served instead of the real answer (a str as is, e.g. HTML; else as JSON)
    hits: int = 0
    pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def applies(self, method: str, path: str, segments: list[str]) -> bool:
        """Whether this request is one the fault is for."""
        if self.method and self.method != method:
            return False
        if self.pattern is not None and not self.pattern.search(path):
            return False
        if self.lineage_of:
            by_name = len(segments) == 6 and segments[:3] == ["api", "v1", "lineage"] and segments[4] == "name"
            return method == "GET" and by_name and segments[5] in self.lineage_of
        return True

    def message_for(self, segments: list[str]) -> str:
        """What the error body says: OM's own sentence for a lineage 404 (`<type> instance for <fqn> not found`)."""
        if self.message:
            return self.message
        if self.lineage_of and self.status == 404:
            return f"{segments[3]} instance for {segments[5]} not found"
        return f"Injected fault {self.id}"

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
            "lineage_of": sorted(self.lineage_of) or None,
            "body": self.body is not None or None,
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
            keys = ("path_regex", "status", "delay_seconds", "retry_after", "lineage_of", "body")
            if not any(spec.get(k) is not None for k in keys):
                if not malformed:
                    raise SimError(400, f"a fault needs one of {', '.join(keys)} or malformed")
                return {"malformed": sorted(self.malformed)}
            status = spec.get("status")
            if status is None and spec.get("retry_after") is not None:
                status = 429
            if status is None and spec.get("body") is not None:
                status = 200
            lineage_of = spec.get("lineage_of") or []
            lineage_of = [lineage_of] if isinstance(lineage_of, str) else lineage_of
            if not isinstance(lineage_of, list) or not all(isinstance(f, str) for f in lineage_of):
                raise SimError(400, "lineage_of must be an FQN or a list of FQNs")
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
                lineage_of=frozenset(lineage_of),
                body=spec.get("body"),
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

    def match(self, method: str, path: str, segments: list[str] | None = None) -> Fault | None:
        """The first fault for this request (one of its `times` is used up); `segments`: the decoded path parts."""
        if not self.faults:
            return None
        with self._lock:
            for fault in self.faults:
                if not fault.applies(method, path, segments if segments is not None else path.split("/")[1:]):
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
