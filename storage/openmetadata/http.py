"""HTTP layer of the OpenMetadata client: one keep-alive httpx session, tenacity retries, error mapping."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_exponential_jitter

from storage.errors import OMAuthError, OMNotFound, OMNotOpenMetadata, OMUnavailable, OpenMetadataError
from storage.redact import mask_secrets

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A refused connection or an unknown host is not a hiccup: one quick retry (a server restarting, a DNS blip), then
# one clear sentence, instead of the backoff meant for timeouts and 5xx (which took 19 s to say "refused").
UNREACHABLE_ATTEMPTS = 2
UNREACHABLE_WAIT = 0.3
VERSION_PATH = "v1/system/version"
EXCERPT_CHARS = 100
Sleep = Callable[[float], Awaitable[None]]
QueryParams = Mapping[str, str | int | bool]
_BEARER = re.compile(r"Bearer\s+\S+", re.IGNORECASE)


@dataclass
class ClientStats:
    """Counters of one client: HTTP attempts, retries (sleeps between attempts) and response bytes."""

    requests: int = 0
    retries: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for `sync_runs.stats`)."""
        return asdict(self)


class _Retryable(Exception):
    """One failed attempt that tenacity may retry: a retryable status or a transport error."""

    def __init__(
        self,
        reason: str,
        *,
        url: str,
        status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason, self.url, self.status, self.message = reason, url, status, message
        self.retry_after = retry_after


class _Unreachable(_Retryable):
    """A connection that could not be made at all: refused, unknown host, no route."""


def _unreachable_cause(exc: BaseException) -> str:
    """What stopped the connection, in a few words: `connection refused`, `unknown host`, …"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.strerror.lower() if seen.strerror else f"errno {seen.errno}"
        seen = seen.__cause__ or seen.__context__
    said = str(exc).lower()
    if "refused" in said:
        return "connection refused"
    if "name or service not known" in said or "nodename nor servname" in said or "name resolution" in said:
        return "unknown host"
    return "connection failed"


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of an answer's body, on one line, quoted with its control characters escaped."""
    flat = " ".join(text.split())
    cut = flat[:limit] + ("…" if len(flat) > limit else "")
    return json.dumps(cut, ensure_ascii=False)


def _is_json(response: httpx.Response) -> bool:
    kind: str = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


class _StopWhenUnreachable(stop_base):
    """Tenacity stop: `UNREACHABLE_ATTEMPTS` attempts of one request could not connect (timeouts and 5xx between
    them keep their own budget)."""

    def __init__(self) -> None:
        self.unreachable = 0

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is not None and isinstance(outcome.exception(), _Unreachable):
            self.unreachable += 1
        return self.unreachable >= UNREACHABLE_ATTEMPTS


def normalise_base_url(base_url: str) -> str:
    """`http://host:8585`, `http://host:8585/` and `http://host:8585/api` all become `http://host:8585/api/`."""
    url = base_url.strip().rstrip("/")
    if not url.endswith("/api"):
        url += "/api"
    return url + "/"


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a `Retry-After` header (delta seconds or an HTTP date) into seconds ≥ 0, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class OMHttp:
    """GETs JSON from `<base>/api/…` with a bearer token, bounded concurrency and retries."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        concurrency: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_cap: float = 60.0,
    ) -> None:
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be ≥ 1 and max_retries ≥ 0")
        self.base_url = normalise_base_url(base_url)
        self.server_url = self.base_url.removesuffix("api/").rstrip("/")  # what the user configured, without /api
        self._token = token or None
        self.max_retries = max_retries
        self.stats = ClientStats()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._exp_wait = wait_exponential_jitter(multiplier=backoff, max=backoff_max, jitter=backoff)
        self._retry_after_cap = retry_after_cap
        self._slots = asyncio.Semaphore(concurrency)
        headers = {"Accept": "application/json", "User-Agent": "dnabot"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def __repr__(self) -> str:
        return f"OMHttp({self.base_url!r})"

    async def aclose(self) -> None:
        """Close the keep-alive connections."""
        await self._client.aclose()

    def redact(self, text: str) -> str:
        """Remove the bearer token from any text that may end in a log line or an exception."""
        if self._token:  # whole occurrences only: a short token must not mask letters inside words
            text = mask_secrets(text, [self._token])
        return _BEARER.sub("Bearer ***", text)

    async def get_json(self, path: str, params: QueryParams | None = None) -> Any:
        """GET `path` (relative to `/api/`), retrying transient failures; returns the decoded JSON."""
        return await self._retrying("GET", path, lambda: self._attempt(path, params))

    async def post_json(self, path: str, body: Any) -> Any:
        """POST `body` as JSON to `path` (relative to `/api/`), with `get_json`'s retries and error mapping."""
        return await self._retrying("POST", path, lambda: self._post_attempt(path, body))

    async def _retrying(self, method: str, path: str, attempt_once: Callable[[], Awaitable[Any]]) -> Any:
        """Run one request with tenacity: transient failures are retried, then become `OMUnavailable`."""
        retrying = AsyncRetrying(
            stop=_StopWhenUnreachable() | stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await attempt_once()
        except _Unreachable as exc:
            text = (
                f"cannot reach OpenMetadata at {self.server_url} ({exc.reason}): "
                "is the server running and OPENMETADATA_URL right?"
            )
            raise OMUnavailable(self.redact(text), url=exc.url) from exc
        except _Retryable as exc:
            tries = self.max_retries + 1
            text = (
                f"OpenMetadata is unavailable at {self.base_url}: {method} /{path} failed {tries} time(s), "
                f"last: {exc.reason}"
            )
            raise OMUnavailable(self.redact(text), status=exc.status, url=exc.url, message=exc.message) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _post_attempt(self, path: str, body: Any) -> Any:
        async with self._slots:
            self.stats.requests += 1
            try:
                response = await self._client.post(path, json=body)
            except httpx.ConnectError as exc:
                raise _Unreachable(_unreachable_cause(exc), url=self.base_url + path) from None
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                reason = self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                raise _Retryable(reason, url=self.base_url + path) from None
            except httpx.HTTPError as exc:
                raise OpenMetadataError(
                    self.redact(f"Cannot call OpenMetadata at {self.base_url}: {type(exc).__name__}: {exc}"),
                    url=self.base_url + path,
                ) from None
        self.stats.bytes += len(response.content)
        url = str(response.request.url)
        if response.status_code >= 400:
            raise self._error(response, url, method="POST")
        try:
            return response.json() if response.content else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            if not _is_json(response):
                raise self._not_openmetadata(response, url, method="POST") from None
            raise OpenMetadataError(
                f"OpenMetadata answered POST {response.request.url.path} with invalid JSON",
                status=response.status_code,
                url=url,
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Unreachable):
            return UNREACHABLE_WAIT
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self._retry_after_cap)
        return float(self._exp_wait(state))

    async def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        delay = state.upcoming_sleep
        # the quick retry of an unreachable server is not news: its failure is told once, by the caller
        level = logging.DEBUG if isinstance(exc, _Unreachable) else logging.WARNING
        log.log(level, "OpenMetadata retry %d in %.1fs: %s", state.attempt_number, delay, exc)

    async def _attempt(self, path: str, params: QueryParams | None) -> Any:
        async with self._slots:
            self.stats.requests += 1
            try:
                response = await self._client.get(path, params=dict(params) if params else None)
            except httpx.ConnectError as exc:
                raise _Unreachable(_unreachable_cause(exc), url=self.base_url + path) from None
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                url = self.base_url + path
                reason = self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                raise _Retryable(reason, url=url) from None
            except httpx.HTTPError as exc:
                raise OpenMetadataError(
                    self.redact(f"Cannot call OpenMetadata at {self.base_url}: {type(exc).__name__}: {exc}"),
                    url=self.base_url + path,
                ) from None
        self.stats.bytes += len(response.content)
        url = str(response.request.url)
        if response.status_code >= 400:
            raise self._error(response, url)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            if not _is_json(response):
                raise self._not_openmetadata(response, url) from None
            raise OpenMetadataError(
                f"OpenMetadata answered GET {response.request.url.path} with invalid JSON",
                status=response.status_code,
                url=url,
            ) from None

    def _not_openmetadata(self, response: httpx.Response, url: str, *, method: str = "GET") -> OMNotOpenMetadata:
        """A 2xx answer that is not JSON (or a 404 page for the version): a web page, a proxy, another service."""
        kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        body = response.content.decode("utf-8", "replace")
        said = f": {self.redact(excerpt(body))}" if body.strip() else ""
        text = (
            f"{self.server_url} does not look like OpenMetadata (it answered {method} {response.request.url.path} "
            f"with HTTP {response.status_code} {kind}{said}): check OPENMETADATA_URL"
        )
        return OMNotOpenMetadata(text, status=response.status_code, url=url)

    def _error(self, response: httpx.Response, url: str, *, method: str = "GET") -> Exception:
        status = response.status_code
        if status == 404 and not _is_json(response) and response.request.url.path.endswith("/" + VERSION_PATH):
            return self._not_openmetadata(response, url, method=method)
        message = self._server_message(response)
        said = f": {message}" if message else ""
        path = response.request.url.path
        if status in RETRY_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            reason = f"HTTP {status} {response.reason_phrase}{said}"
            return _Retryable(reason, url=url, status=status, message=message, retry_after=retry_after)
        if status in (401, 403):
            text = f"OpenMetadata rejected the token ({status}): check OPENMETADATA_TOKEN"
            if status == 403:
                text += " and the bot's roles"
            return OMAuthError(f"{text} ({method} {path}{said})", status=status, url=url, message=message)
        if status == 404:
            text = f"Not found in OpenMetadata: {method} {path}{said}"
            return OMNotFound(text, status=status, url=url, message=message)
        return OpenMetadataError(
            f"OpenMetadata answered HTTP {status} to {method} {path}{said}",
            status=status,
            url=url,
            message=message,
        )

    def _server_message(self, response: httpx.Response) -> str | None:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and body.get("message"):
            return self.redact(str(body["message"])[:300])
        if body is None and not _is_json(response) and response.text.strip():  # a proxy's page: an excerpt only
            return self.redact(excerpt(response.text))
        text = response.text.strip()
        return self.redact(text[:300]) if text else None


def split_page(body: Any, path: str) -> tuple[list[Any], dict[str, Any]]:
    """Split a list answer into its `data` and `paging`; anything else is a protocol error."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise OpenMetadataError(f"OpenMetadata answered GET /{path} without a `data` list")
    paging = body.get("paging")
    return body["data"], paging if isinstance(paging, dict) else {}
