"""Incident routing: YAML rules that send each incident to the Slack channel of its services, assets or owners."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from storage.errors import DnaBotError
from storage.persistence.incident_views import IncidentView

if TYPE_CHECKING:
    from bot.core.settings import Settings

# What a rule may match on; several keys in one rule must all match, a list of values matches any of them.
MATCH_KEYS = ("fqn", "service", "domain", "dashboard", "owner_team", "owner")


class RoutingConfigError(DnaBotError):
    """The routing file cannot be read or does not say what a routing file should."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"routing config {source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Rule:
    """Send incidents matching every key of `match` (values are globs) to `channel`."""

    match: Mapping[str, tuple[str, ...]]
    channel: str


@dataclass(frozen=True, slots=True)
class Facts:
    """What routing looks at in one incident."""

    fqn: tuple[str, ...]
    service: tuple[str, ...]
    domain: tuple[str, ...]
    dashboard: tuple[str, ...]
    owner: tuple[str, ...]

    @classmethod
    def of(cls, incident: IncidentView) -> Facts:
        details = incident.details or {}
        return cls(
            fqn=(incident.root_fqn,),
            service=(incident.root_fqn.split(".", 1)[0],),
            domain=_strings(details.get("domains")),
            dashboard=_strings(details.get("dashboards")),
            owner=_strings(details.get("owners")),
        )

    def values(self, key: str) -> tuple[str, ...]:
        # OpenMetadata owner names do not say user or team: owner_team and owner both look at the names.
        return self.owner if key == "owner_team" else getattr(self, key)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value if v is not None)


def _matches(rule: Rule, facts: Facts) -> bool:
    return all(
        any(fnmatchcase(value, pattern) for value in facts.values(key) for pattern in patterns)
        for key, patterns in rule.match.items()
    )


@dataclass(frozen=True)
class Router:
    """Routes incidents to channels: the first matching rule wins, else the default channel."""

    rules: Sequence[Rule]
    default_channel: str
    owners: Mapping[str, str] = field(default_factory=dict)  # OpenMetadata owner name → Slack user/group id

    def route(self, incident: IncidentView) -> str:
        """The channel this incident belongs in."""
        facts = Facts.of(incident)
        for rule in self.rules:
            if _matches(rule, facts):
                return rule.channel
        return self.default_channel

    @classmethod
    def from_file(cls, path: str | Path, *, default_channel: str | None = None) -> Router:
        """Read a YAML routing file; `default_channel` (DNABOT_CHANNEL) is used when the file names none."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RoutingConfigError(source, f"cannot be read ({exc.strerror or exc})") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RoutingConfigError(source, f"is not valid YAML ({_yaml_problem(exc)})") from exc
        return cls.from_mapping(data if data is not None else {}, source=source, default_channel=default_channel)

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<config>", default_channel: str | None = None) -> Router:
        """A router from already-parsed configuration (the shape of the YAML file)."""
        if not isinstance(data, Mapping):
            raise RoutingConfigError(source, "must be a mapping with default_channel, rules and owners")
        unknown = sorted(set(data) - {"default_channel", "rules", "owners"})
        if unknown:
            raise RoutingConfigError(source, f"unknown top-level key(s) {', '.join(map(str, unknown))}")
        channel = data.get("default_channel") or default_channel
        if not isinstance(channel, str) or not channel:
            raise RoutingConfigError(source, "needs default_channel (or DNABOT_CHANNEL)")
        rules = [_rule(raw, i, source) for i, raw in enumerate(_list(data.get("rules"), "rules", source))]
        return cls(rules=rules, default_channel=channel, owners=_owners(data.get("owners"), source))


def router_for(settings: Settings) -> Router:
    """The routing rules (DNABOT_CONFIG) or just the default channel (DNABOT_CHANNEL)."""
    if settings.routing_config:
        return Router.from_file(settings.routing_config, default_channel=settings.channel)
    if not settings.channel:
        raise DnaBotError("set DNABOT_CHANNEL (the default incident channel) or DNABOT_CONFIG (routing rules)")
    return Router([], settings.channel)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def _list(value: Any, what: str, source: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RoutingConfigError(source, f"{what} must be a list")
    return value


def _patterns(value: Any, where: str, source: str) -> tuple[str, ...]:
    values: Iterable[Any] = value if isinstance(value, list) else [value]
    out = tuple(str(v) for v in values if isinstance(v, str | int) and str(v))
    if not out or len(out) != len(list(values)):
        raise RoutingConfigError(source, f"{where} must be a non-empty string or list of strings")
    return out


def _rule(raw: Any, index: int, source: str) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, Mapping) or not isinstance(raw.get("match"), Mapping) or not raw["match"]:
        raise RoutingConfigError(source, f"{where} needs a non-empty `match` mapping and a `channel`")
    channel = raw.get("channel")
    if not isinstance(channel, str) or not channel:
        raise RoutingConfigError(source, f"{where} needs a `channel`")
    unknown = sorted(set(map(str, raw["match"])) - set(MATCH_KEYS))
    if unknown:
        raise RoutingConfigError(
            source, f"{where} matches on unknown key(s) {', '.join(unknown)}; use {', '.join(MATCH_KEYS)}"
        )
    match = {str(k): _patterns(v, f"{where}.match.{k}", source) for k, v in raw["match"].items()}
    return Rule(match=match, channel=channel)


def _owners(value: Any, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) and v for v in value.values()):
        raise RoutingConfigError(source, "owners must map OpenMetadata owner names to Slack ids")
    return {str(k): v for k, v in value.items()}
