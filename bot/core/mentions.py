"""OpenMetadata owner names → Slack user ids: the owner's email from `people`, then `users.lookupByEmail`."""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine

from storage.persistence.db import session_factory
from storage.persistence.people import emails_of

log = logging.getLogger(__name__)


class SlackMentions:
    """`mentions(owner_names) -> {name: slack_id}` for the `Notifier`; names with no Slack user are left out.

    Email lookups are cached for the life of the instance, misses included. A team is looked up only when
    OpenMetadata gives it an email (no email, no lookup). Slack errors other than `users_not_found` are logged
    and the owner stays a plain name (and is tried again next time).
    """

    def __init__(self, engine: Engine, client: WebClient) -> None:
        self.engine = engine
        self.client = client
        self._by_email: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def __call__(self, owner_names: list[str]) -> dict[str, str]:
        names = [n for n in dict.fromkeys(owner_names) if n]
        if not names:
            return {}
        with session_factory(self.engine)() as session:
            emails = emails_of(session, names)
        out: dict[str, str] = {}
        for name in names:
            email = emails.get(name)
            if email:
                uid = self._lookup(email)
                if uid:
                    out[name] = uid
        return out

    def _lookup(self, email: str) -> str | None:
        key = email.strip().lower()
        with self._lock:
            if key in self._by_email:
                return self._by_email[key]
        try:
            answer = self.client.users_lookupByEmail(email=email.strip())
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                log.warning("users.lookupByEmail failed for %s; the owner stays a plain name: %s", email, exc)
                return None
            uid = None
        except (SlackClientError, OSError) as exc:
            log.warning("users.lookupByEmail failed for %s; the owner stays a plain name: %s", email, exc)
            return None
        else:
            user = answer.get("user") or {}
            uid = user.get("id") or None
        with self._lock:
            self._by_email[key] = uid
        return uid
