"""What one OpenMetadata version shows of an entity: the `fields=` it accepts and the shape it renders.

The accepted fields come from the version table (`storage.openmetadata.versions`): a server accepts every property
of the
entity class, plus `*` (`EntityRepository.allowedFields = getEntityFields(entityClass)`), and answers
`400 Invalid field name X` to anything else. Which of those properties are relationship fields, left out unless
asked for, is the simulator's own knowledge (`RELATIONSHIP_FIELDS`); stored data keeps one shape (newest names:
`domains` as a list) and is rendered per version (`domain`, one EntityReference, on 1.5–1.8).
"""

from __future__ import annotations

from typing import Any

from simulator.records import SimError
from storage.openmetadata.versions import Profile

# Fields a server fills from relationships or side tables: absent unless `fields=` names them (or `*`).
RELATIONSHIP_FIELDS = frozenset(
    {
        "owners", "owner", "followers", "votes", "tags", "usageSummary", "joins", "tableConstraints",
        "tablePartition", "customMetrics", "sampleData", "schemaDefinition", "dataModel", "extension", "testSuite",
        "domain", "domains", "dataProducts", "lifeCycle", "sourceHash", "charts", "dataModels", "dashboards",
        "tasks", "pipelineStatus", "scheduleInterval", "testCaseResult", "incidentId", "testSuites", "reviewers",
        "entityStatus", "teams", "roles", "personas", "defaultPersona", "owns", "follows", "inheritedRoles",
        "users", "parents", "children", "policies", "defaultRoles", "userCount", "childrenCount", "profile",
    }
)  # fmt: skip
# Relationship fields the simulator always returns because the JSON Schemas require them.
ALWAYS_FIELDS: dict[str, frozenset[str]] = {
    "table": frozenset({"columns"}),
    "testCase": frozenset({"testDefinition", "testSuite"}),
}
# Entity types that carry columns (their column `tags` are a relationship field too).
COLUMN_TYPES = frozenset({"table", "dashboardDataModel"})
_MISSING = object()
# `ChangeEvent.recursive` (a cascade delete's single root event): in the generated model of the 2.0.7.0 wheel,
# absent from 1.13.6.3's. Used when the version table does not list ChangeEvent's properties.
RECURSIVE_FLAG_SINCE = (2, 0)


class VersionView:
    """One profile's rendering rules, per entity type (built once per profile, see `view_for`)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.key = (profile.release, profile.range)
        self._gated: dict[str, frozenset[str]] = {}
        self._renames: dict[str, dict[str, str]] = {}

    def properties(self, etype: str) -> frozenset[str] | None:
        """Every property of the entity on this version, or None for a type the table does not describe."""
        props = self.profile.properties.get(etype)
        return props if props else None

    def gated(self, etype: str) -> frozenset[str]:
        """The properties of `etype` left out unless asked for."""
        if etype not in self._gated:
            props = self.properties(etype) or RELATIONSHIP_FIELDS
            self._gated[etype] = (props & RELATIONSHIP_FIELDS) - ALWAYS_FIELDS.get(etype, frozenset())
        return self._gated[etype]

    def renames(self, etype: str) -> dict[str, str]:
        """Stored (newest) name → this version's name, for the fields a version spells differently."""
        if etype not in self._renames:
            out: dict[str, str] = {}
            for stored in ("domains", "owners"):
                spelled = self.profile.field_name(etype, stored)
                if spelled is not None and spelled != stored:
                    out[stored] = spelled
            self._renames[etype] = out
        return self._renames[etype]

    def parse_fields(self, etype: str, raw: str | None) -> frozenset[str]:
        """A `fields=` value checked against this version (`*` = every property; 400 on an unknown name)."""
        if not raw:
            return frozenset()
        props = self.properties(etype)
        out: set[str] = set()
        for part in raw.split(","):
            name = part.strip()
            if not name:
                continue
            if name == "*":
                out |= props or RELATIONSHIP_FIELDS
                continue
            if props is not None and name not in props:
                raise SimError(400, f"Invalid field name {name}")
            out.add(name)
        return frozenset(out)

    @property
    def marks_recursive(self) -> bool:
        """Whether a cascade delete's root event carries `recursive: true` on this version."""
        props = self.profile.properties.get("changeEvent")
        return "recursive" in props if props else self.profile.release >= RECURSIVE_FLAG_SINCE

    def all_fields(self, etype: str) -> frozenset[str]:
        """What `fields=*` means for `etype`."""
        return self.properties(etype) or RELATIONSHIP_FIELDS

    def render(self, etype: str, doc: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
        """The stored entity as this version returns it for `fields`."""
        props = self.properties(etype)
        gated = self.gated(etype)
        renames = self.renames(etype)
        out: dict[str, Any] = {}
        for key, value in doc.items():
            name = renames.get(key, key)
            if props is not None and name not in props:
                continue
            if name in gated and name not in fields:
                continue
            shaped = _shape(name, value)
            if shaped is not _MISSING:
                out[name] = shaped
        if "tags" not in fields and etype in COLUMN_TYPES and isinstance(out.get("columns"), list):
            out["columns"] = [_strip_column_tags(c) for c in out["columns"]]
        return out


def _shape(name: str, value: Any) -> Any:
    """A stored list rendered as the singular field of older versions (`domain`, `owner`: one reference)."""
    if name in ("domain", "owner") and isinstance(value, list):
        return value[0] if value else _MISSING
    return value


def _strip_column_tags(col: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in col.items() if k != "tags"}
    if out.get("children"):
        out["children"] = [_strip_column_tags(c) for c in out["children"]]
    return out


_VIEWS: dict[tuple[tuple[int, int], str], VersionView] = {}


def view_for(profile: Profile) -> VersionView:
    """The (shared) view of one profile (profiles hold dicts, so they are keyed by release, not hashed)."""
    key = (profile.release, profile.range)
    view = _VIEWS.get(key)
    if view is None:
        view = _VIEWS[key] = VersionView(profile)
    return view
