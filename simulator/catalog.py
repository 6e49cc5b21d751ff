"""The simulator's catalog: every entity, edge, test and event, with its constructors and mutations.

A `Catalog` is plain in-memory state guarded by one re-entrant lock, so the HTTP app (running in a
uvicorn thread) and in-process callers (the demo, tests) can both use it. Time comes from `clock`
(epoch ms); every timestamp the catalog hands out is strictly greater than the previous one.

Build one with `Catalog.from_sample_data(path)` (OM's official sample data, doc §9.3),
`Catalog.from_file(path)` / `Catalog.from_dict(d)` (our compact format, see `simulator.compact`),
or `simulator.synthetic.synthetic_catalog(n)` (benchmarks).

Column lineage and schema changes: by default a dropped or renamed column stays referenced by the
lineage edges that mapped it (so a broken mapping is visible in `GET /v1/lineage`); pass
`lineage_follows_columns=True` to rewrite mappings the way newer OM servers do (`ColumnLineageUtil`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator.cascade import CascadeMixin


class Catalog(CascadeMixin):
    """An OpenMetadata-shaped catalog held in memory."""

    @classmethod
    def from_sample_data(cls, path: str | Path, *, clock: Callable[[], int] | None = None) -> Catalog:
        """Load OM's official sample data directory (read in place, never copied)."""
        from simulator.sample_data import load_sample_data

        catalog = cls(clock=clock)
        load_sample_data(catalog, Path(path))
        return catalog

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, clock: Callable[[], int] | None = None) -> Catalog:
        """Build a catalog from the compact format (`simulator.compact`)."""
        from simulator.compact import load_compact

        catalog = cls(clock=clock)
        load_compact(catalog, data)
        return catalog

    @classmethod
    def from_file(cls, path: str | Path, *, clock: Callable[[], int] | None = None) -> Catalog:
        """Build a catalog from a compact-format JSON file."""
        import json

        return cls.from_dict(json.loads(Path(path).read_text("utf-8")), clock=clock)

    @classmethod
    def demo(cls, *, clock: Callable[[], int] | None = None) -> Catalog:
        """The bundled demo warehouse (`demo_catalog.json`)."""
        return cls.from_file(DEMO_CATALOG, clock=clock)

    def entity(self, etype: str, fqn: str, *, include: str = "all") -> dict[str, Any]:
        """The current JSON of an entity, every field included (404 SimError when absent)."""
        with self.lock:
            return self.get(etype, fqn, include=include).doc()

    def counts(self) -> dict[str, int]:
        """How many entities of each type (deleted included), for logs and tests."""
        with self.lock:
            return {t: len(rows) for t, rows in sorted(self.by_type.items())}


DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")
