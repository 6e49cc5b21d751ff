"""Who may change what: DNA Bot admins, and an asset's owners, known by their verified Slack email in this workspace."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core import services
from bot.core.settings import Settings
from bot.core.slack_client import build_client
from storage.errors import DatasetNotFound, DnaBotError
from storage.persistence import db, store, subscriptions
from storage.persistence.incident_views import IncidentView
from storage.persistence.people import emails_of

log = logging.getLogger(__name__)

USER_TTL_SECONDS = 300.0  # a click must stay fast; a changed Slack profile counts within five minutes
GROUP_TTL_SECONDS = 300.0


class NotAllowed(DnaBotError):
    """The user may not do this (not an admin, not an owner); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Member:
    """One Slack user as authorisation sees them: the verified email, or why there is none to trust."""

    user_id: str
    email: str | None
    why_not: str | None = None


def member_from(user: Mapping[str, Any], team_id: str | None) -> Member:
    """Read a `users.info` user: the profile email counts only for a live, confirmed user of the bot's workspace.

    Refused: another workspace's user (`team_id`), a Slack Connect stranger (`is_stranger`), an unconfirmed
    email, a deleted user, a bot. Guests of this workspace (`is_restricted`, `is_ultra_restricted`) count:
    an admin invited them with that email, and only the assets they own are theirs to act on.
    """
    uid = str(user.get("id") or "")
    email = str((user.get("profile") or {}).get("email") or "").strip().lower()
    why_not = None
    if user.get("deleted"):
        why_not = "deleted"
    elif user.get("is_bot"):
        why_not = "a bot"
    elif user.get("is_stranger"):
        why_not = "a Slack Connect user of another organisation"
    elif not team_id or user.get("team_id") != team_id:
        why_not = "from another workspace"
    elif user.get("is_email_confirmed") is not True:
        why_not = "email not confirmed"
    elif not email:
        why_not = "no email visible"
    return Member(uid, None if why_not else email, why_not)


class Gate:
    """The rule and its caches for one Settings: admins (ids and expanded user groups) and verified emails."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, tuple[float, Member]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._team: str | None = None
        self._client: Any = None

    def _slack(self) -> Any:
        if self._client is None:
            self._client = build_client(self.settings)
        return self._client

    # -------------------------------------------------------------------------------------------- admins

    def admins(self) -> set[str]:
        """The user ids in DNABOT_ADMINS, with user groups (ids starting with S) expanded to their members.

        A group Slack cannot answer for counts as empty: nobody gains rights by an error."""
        entries = {a.strip() for a in self.settings.admins.split(",") if a.strip()}
        users = {e for e in entries if not e.startswith("S")}
        for group in sorted(entries - users):
            users |= self._group_members(group)
        return users

    def _group_members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._groups.get(group)
        if cached and self.clock() - cached[0] < GROUP_TTL_SECONDS:
            return cached[1]
        try:
            members = frozenset(self._slack().usergroups_users_list(usergroup=group).get("users") or [])
        except (SlackApiError, DnaBotError, OSError) as exc:
            log.warning("cannot read the members of admin group %s: %s", group, type(exc).__name__)
            return frozenset()
        with self._lock:
            self._groups[group] = (self.clock(), members)
        return members

    # ------------------------------------------------------------------------------------------- members

    def team_id(self) -> str | None:
        """The bot's own workspace (`auth.test`), asked once."""
        if self._team is None:
            try:
                self._team = str(self._slack().auth_test().get("team_id") or "") or None
            except (SlackApiError, DnaBotError, OSError) as exc:
                log.warning("cannot learn the bot's workspace (auth.test): %s", type(exc).__name__)
        return self._team

    def member(self, user_id: str) -> Member:
        """`users.info` for `user_id`, read through a short cache; a failed read trusts no email (not cached
        unless Slack said the user does not exist)."""
        with self._lock:
            cached = self._users.get(user_id)
        if cached and self.clock() - cached[0] < USER_TTL_SECONDS:
            return cached[1]
        try:
            user = self._slack().users_info(user=user_id)["user"]
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            found = Member(user_id, None, f"unknown to Slack ({error})")
            if error in ("user_not_found", "user_not_visible"):
                with self._lock:
                    self._users[user_id] = (self.clock(), found)
            return found
        except (DnaBotError, OSError, KeyError, TypeError) as exc:
            log.warning("cannot read Slack user %s: %s", user_id, type(exc).__name__)
            return Member(user_id, None, "Slack could not be asked")
        team = self.team_id()
        found = member_from(user, team)
        if found.user_id != user_id:  # an answer about someone else proves nothing about this user
            return Member(user_id, None, "Slack answered for another user")
        if team is not None:  # without the bot's workspace nobody is trusted, but only until it can be asked
            with self._lock:
                self._users[user_id] = (self.clock(), found)
        return found

    def owns(self, user_id: str, names: Iterable[str], emails: Iterable[str] = ()) -> bool:
        """Whether the user's verified email is the email of one of these OpenMetadata owners."""
        names, wanted = list(names), {e.strip().lower() for e in emails if e and e.strip()}
        if not names and not wanted:
            return False
        member = self.member(user_id)
        if member.email is None:
            if member.why_not:
                log.info("Slack user %s not matched to an owner: %s", user_id, member.why_not)
            return False
        if names:
            with db.session_factory(services.engine_for(self.settings))() as session:
                wanted |= {e.strip().lower() for e in emails_of(session, names).values()}
        return member.email in wanted

    def may(self, user_id: str, names: Iterable[str], emails: Iterable[str] = ()) -> bool:
        """The rule: an admin, or an owner of the asset."""
        return bool(user_id) and (user_id in self.admins() or self.owns(user_id, names, emails))


_gates: dict[int, tuple[Settings, Gate]] = {}
_gates_lock = threading.Lock()


def gate(settings: Settings) -> Gate:
    """The Gate of these settings (one per Settings object, so its caches live as long as the app that uses it)."""
    with _gates_lock:
        found = _gates.get(id(settings))
        if found is None or found[0] is not settings:
            found = (settings, Gate(settings))
            _gates[id(settings)] = found
        return found[1]


def admins(settings: Settings) -> set[str]:
    """The admins' Slack user ids (DNABOT_ADMINS with user groups expanded)."""
    return gate(settings).admins()


def verified_email(settings: Settings, user_id: str) -> str | None:
    """The Slack user's profile email when it can be trusted (confirmed, this workspace, no stranger), else None."""
    return gate(settings).member(user_id).email


def _refuse(why: str) -> None:
    raise NotAllowed(why)


def require_admin(settings: Settings, user_id: str, why: str) -> None:
    """NotAllowed(why) unless the user is an admin."""
    if user_id not in admins(settings):
        _refuse(why)


def incident_owners(incident: IncidentView) -> tuple[list[str], list[str]]:
    """(OpenMetadata owner names, emails given with them) of the incident's root and broken assets."""
    names: list[str] = []
    emails: list[str] = []
    for owner in (incident.details or {}).get("owners") or []:
        if isinstance(owner, str):
            names.append(owner)
        elif isinstance(owner, dict):
            names += [str(owner["name"])] if owner.get("name") else []
            emails += [str(owner["email"])] if owner.get("email") else []
    return names, emails


def require_incident_rights(settings: Settings, user_id: str, incident: IncidentView, what: str) -> None:
    """NotAllowed unless the user is an admin or an owner of an asset the incident is about; checked before
    anything changes."""
    names, emails = incident_owners(incident)
    if not gate(settings).may(user_id, names, emails):
        _refuse(f"only DNA Bot admins or the owners of {incident.root_fqn} can {what} this incident")


def dataset_owners(settings: Settings, fqn: str) -> list[str]:
    """The OpenMetadata owner names of a dataset, as its current DNA has them."""
    with db.session_factory(services.engine_for(settings))() as session:
        view = store.dna_at(session, fqn)
    owners = ((view.genes if view else {}).get("ownership") or {}).get("owners") or []
    return [str(o.get("name")) for o in owners if isinstance(o, dict) and o.get("name")]


def require_dataset_rights(settings: Settings, user_id: str, fqn: str, what: str) -> None:
    """NotAllowed unless the user is an admin or an owner of the dataset `fqn`."""
    if not gate(settings).may(user_id, dataset_owners(settings, fqn)):
        _refuse(f"only DNA Bot admins or the owners of {fqn} can {what}")


def require_subscription_rights(settings: Settings, user_id: str, target_text: str, what: str) -> None:
    """Who may make a channel follow (or stop following) `target_text`: admins for anything; the owners of a
    dataset for that one dataset. Globs, services and domains reach many owners' assets: admins only.

    An unknown dataset raises DatasetNotFound (the did-you-mean); `unsubscribe` from a dataset gone from the
    catalog is judged by its stored name."""
    if user_id in admins(settings):
        return
    with db.session_factory(services.engine_for(settings))() as session:
        try:
            kind, target = subscriptions.parse_target(session, target_text)
        except DatasetNotFound:
            if what != "unsubscribe":
                raise
            kind, target = "fqn", target_text.strip()
    doing = "make a channel follow" if what == "subscribe" else "make a channel stop following"
    if kind == "fqn" and not subscriptions.is_glob(target):
        if not gate(settings).owns(user_id, dataset_owners(settings, target)):
            _refuse(f"only DNA Bot admins or the owners of {target} can {doing} it")
        return
    shown = "a glob" if kind == "fqn" else f"a {kind}"
    _refuse(f"only DNA Bot admins can {doing} {shown} (a dataset's owners can, for their dataset)")
