"""Domain errors of DNA Bot: a small hierarchy the bot turns into friendly messages in one place."""

from __future__ import annotations


class DnaBotError(Exception):
    """Base of every error DNA Bot raises on purpose (anything else is a bug)."""


class OpenMetadataError(DnaBotError):
    """A call to OpenMetadata failed; `status`, `url` and the server's own `message` are kept apart."""

    def __init__(
        self, text: str, *, status: int | None = None, url: str | None = None, message: str | None = None
    ) -> None:
        super().__init__(text)
        self.text = text
        self.status = status
        self.url = url
        self.message = message  # what the server said (its `message` key), if anything

    def __str__(self) -> str:
        return self.text


class OMAuthError(OpenMetadataError):
    """OpenMetadata refused the bearer token (401) or the bot's permissions (403)."""


class OMNotFound(OpenMetadataError):
    """The requested entity does not exist on the server (404)."""


class OMUnsupportedVersion(OpenMetadataError):
    """The server runs an OpenMetadata version outside the supported range."""

    def __init__(self, text: str, *, version: str, supported: str, url: str | None = None) -> None:
        super().__init__(text, url=url)
        self.version = version
        self.supported = supported


class OMNotOpenMetadata(OpenMetadataError):
    """The configured URL answers, but not as OpenMetadata does (a web page, a proxy, another service)."""


class OMUnavailable(OpenMetadataError):
    """OpenMetadata could not be reached or kept failing after every retry."""


class DatasetNotFound(DnaBotError):
    """A user asked for a dataset the store does not know; `suggestions` holds close FQNs."""

    def __init__(self, query: str, suggestions: list[str] | None = None) -> None:
        self.query = query
        self.suggestions = list(suggestions or [])
        text = f"No dataset matches {query!r}"
        if self.suggestions:
            text += ": did you mean " + ", ".join(self.suggestions[:5]) + "?"
        super().__init__(text)


class AmbiguousDataset(DatasetNotFound):
    """Several datasets match a user's name and none is picked; `candidates` lists them, live ones first.

    A subclass of DatasetNotFound, so every handler of an unknown name also answers an ambiguous one (exit
    code 2 in the CLI); `suggestions` are the candidates, for the renderers that only know the did-you-mean."""

    SHOWN = 10  # candidates named in the message; the rest are counted

    def __init__(self, query: str, candidates: list[str]) -> None:
        self.query = query
        self.candidates = list(candidates)
        self.suggestions = list(candidates)
        shown = self.candidates[: self.SHOWN]
        text = f"{query!r} matches {len(self.candidates)} datasets: " + ", ".join(shown)
        if len(self.candidates) > len(shown):
            text += f" …and {len(self.candidates) - len(shown)} more"
        DnaBotError.__init__(self, text + ". Which one? Give more of its name (or the full FQN).")


class OMConfigError(DnaBotError):
    """The OpenMetadata connection is not configured (no URL)."""


class ColumnNotFound(DnaBotError):
    """A column the asset has neither in its schema nor in its lineage; `suggestions` holds close names."""

    def __init__(self, fqn: str, column: str, suggestions: list[str] | None = None) -> None:
        self.fqn = fqn
        self.column = column
        self.suggestions = list(suggestions or [])
        text = f"{fqn} has no column {column!r}"
        if self.suggestions:
            text += ": did you mean " + ", ".join(self.suggestions[:5]) + "?"
        super().__init__(text)


class InvalidTransition(DnaBotError):
    """An incident status change the lifecycle does not allow (e.g. acknowledging a resolved incident)."""

    def __init__(self, text: str, *, incident_id: int, status_from: str, status_to: str) -> None:
        super().__init__(text)
        self.incident_id = incident_id
        self.status_from = status_from
        self.status_to = status_to


class IncidentNotFound(DnaBotError):
    """No incident has the requested id."""

    def __init__(self, incident_id: int) -> None:
        super().__init__(f"there is no incident {incident_id}: run `dnabot incidents` to list them")
        self.incident_id = incident_id


class SnapshotNotFound(DnaBotError):
    """An asset has no DNA snapshot at the instant asked for (it was first synced later)."""


class SettingsInvalid(DnaBotError):
    """A setting has a value DNA Bot cannot use; the text names the variable, never its value."""
