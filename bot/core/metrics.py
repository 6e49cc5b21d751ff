"""Prometheus metrics: counters recorded as things happen, and gauges read from the database at each scrape.

Counters and histograms live in the process-wide `prometheus_client` registry (with the LLM/MCP ones of
`agents.metrics` and the client's process and GC collectors). `render(settings)` adds a `StoreCollector`
for that settings' database, whose gauges (open incidents, outbox depth and age, the last sync, who leads)
are read fresh at every scrape; when the database cannot be read the scrape still answers, with
`dnabot_store_up 0` and without those gauges.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector
from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from sqlalchemy import Engine
from sqlalchemy.pool import NullPool

from agents import metrics as agent_metrics  # noqa: F401  (registers the LLM/MCP metrics before a scrape)
from bot.core.settings import Settings
from storage.persistence import db, outbox
from storage.persistence.coordination import SCHEDULER_LEASE, holder_of, replica_id
from storage.persistence.incidents import SEVERITIES
from storage.persistence.models import Incident, SyncRun
from storage.sync.run import SyncResult

log = logging.getLogger(__name__)

SYNC_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
DELIVERY_RESULTS = ("delivered", "retry", "dead", "skipped")
_SLACK_CODE = re.compile(r"^[a-z0-9_.]{1,64}$")

SYNC_RUNS = Counter(
    "dnabot_sync_runs",
    "Sync runs, by mode (full|incremental|targeted) and result (succeeded|failed).",
    ["mode", "result"],
)
SYNC_SECONDS = Histogram(
    "dnabot_sync_duration_seconds", "Duration of sync runs, fetch and write.", buckets=SYNC_BUCKETS
)
SLACK_CALLS = Counter(
    "dnabot_slack_api_calls", "Slack Web API calls made, by method (retries inside a call not counted).", ["method"]
)
SLACK_ERRORS = Counter(
    "dnabot_slack_api_errors",
    "Slack Web API calls that failed, by method and error (Slack's error code, http_<status>, connection).",
    ["method", "error"],
)
OUTBOX_DELIVERIES = Counter(
    "dnabot_outbox_deliveries",
    "Outbox delivery attempts, by kind and result (delivered|retry|dead|skipped).",
    ["kind", "result"],
)
INBOUND_DUPLICATES = Counter(
    "dnabot_inbound_duplicates",
    "Inbound deliveries recognised as repeats and not processed again, by source.",
    ["source"],
)
WEBHOOK_REQUESTS = Counter("dnabot_webhook_requests", "OpenMetadata webhook requests, by result.", ["result"])
QUESTIONS_REFUSED = Counter(
    "dnabot_questions_refused",
    "Questions not taken by the answer pool, by reason (user|channel|queue|closed): the asker was told to wait.",
    ["reason"],
)
ANSWERS_WAITING = Gauge("dnabot_answers_waiting", "Questions accepted by the answer pool, waiting for a worker.")


def observe_sync(result: SyncResult) -> None:
    """Count one finished sync run and its duration."""
    SYNC_RUNS.labels(mode=result.mode, result=result.status).inc()
    SYNC_SECONDS.observe(result.duration_seconds)


def observe_delivery(kind: str, result: str) -> None:
    """Count one outbox delivery attempt: delivered, retry (scheduled again), dead (gave up) or skipped."""
    if result not in DELIVERY_RESULTS:
        raise ValueError(f"delivery result must be one of {DELIVERY_RESULTS}, not {result!r}")
    OUTBOX_DELIVERIES.labels(kind=kind, result=result).inc()


def observe_duplicate(source: str) -> None:
    """Count one inbound delivery dropped as a repeat (a Slack event retry, a repeated trigger, …)."""
    INBOUND_DUPLICATES.labels(source=source).inc()


def observe_webhook(result: str) -> None:
    """Count one OpenMetadata webhook request by how it ended (accepted, bad_signature, bad_request, …)."""
    WEBHOOK_REQUESTS.labels(result=result).inc()


def observe_answer_refused(reason: str) -> None:
    """Count one question the answer pool refused (the asker is over a limit, or the queue is full)."""
    QUESTIONS_REFUSED.labels(reason=reason).inc()


def set_answers_waiting(count: int) -> None:
    """The answer pool's queue depth now."""
    ANSWERS_WAITING.set(count)


def slack_error_label(exc: SlackApiError) -> str:
    """Slack's error code (`ratelimited`, `channel_not_found`, …), else `http_<status>`."""
    response = exc.response
    code: Any = None
    try:
        code = response.get("error") if response is not None else None
    except Exception:  # a body that is not a JSON object has no error code
        code = None
    if isinstance(code, str) and _SLACK_CODE.match(code):
        return code
    status = getattr(response, "status_code", None)
    return f"http_{status}" if status else "unknown"


class CountingWebClient(WebClient):
    """A `slack_sdk.WebClient` that counts every API call and every failure by method; errors pass unchanged."""

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        SLACK_CALLS.labels(method=api_method).inc()
        try:
            return super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            SLACK_ERRORS.labels(method=api_method, error=slack_error_label(exc)).inc()
            raise
        except (OSError, http.client.HTTPException):  # URLError, timeouts, resets, a half-read answer
            SLACK_ERRORS.labels(method=api_method, error="connection").inc()
            raise
        except Exception:
            SLACK_ERRORS.labels(method=api_method, error="client_error").inc()
            raise


def counting_copy(client: WebClient) -> CountingWebClient:
    """A `CountingWebClient` configured like `client` (token, URL, timeout, proxy, headers, retry handlers)."""
    return CountingWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        headers=dict(client.headers),
        team_id=client.default_params.get("team_id"),
        logger=client.logger,
        retry_handlers=list(client.retry_handlers),
    )


def count_slack_calls(context: BoltContext, next_: Callable[[], Any]) -> Any:
    """Bolt global middleware: Bolt gives each request a plain `WebClient` copy of the app's client, so this
    swaps in a counting one for the listeners' `client` and for the helpers already holding it (`say`, …)."""
    client = context.client
    if client is None or isinstance(client, CountingWebClient):
        return next_()
    counting = counting_copy(client)
    for helper in list(context.values()):  # Bolt builds say/complete/fail before any custom middleware runs
        if helper is not client and getattr(helper, "client", None) is client:
            with contextlib.suppress(AttributeError):
                helper.client = counting
    context["client"] = counting
    return next_()


# ------------------------------------------------------------------------------------- gauges from the store


def _gauge(name: str, text: str, value: float | None = None, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value, labels=list(labels) or None)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite aggregates and raw selects skip the UTC type decorator; the store writes UTC only
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class StoreCollector(Collector):
    """Gauges read from the database at scrape time; `dnabot_store_up` says whether that worked."""

    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        *,
        replica: str,
        lease: str = SCHEDULER_LEASE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._factory = engine_factory
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self.replica = replica
        self.lease = lease
        self._clock = clock
        self._up: bool | None = None

    def _engine_once(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._factory()
            return self._engine

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._read()
        except Exception as exc:  # a scrape must answer even when the database does not
            if self._up is not False:
                log.warning("metrics: the store cannot be read: %s", type(exc).__name__)
            self._up = False
            yield _gauge("dnabot_store_up", "1 if the database answered this scrape, else 0.", 0)
            return
        if self._up is False:
            log.info("metrics: the store answers again")
        self._up = True
        yield from families
        yield _gauge("dnabot_store_up", "1 if the database answered this scrape, else 0.", 1)

    def _read(self) -> list[Metric]:
        """Every gauge, read in one session (nothing is yielded unless all of it was read)."""
        now = self._clock()
        with db.session_factory(self._engine_once())() as session:
            severities = dict(
                session.execute(
                    sa.select(Incident.severity, sa.func.count())
                    .where(Incident.status != "resolved")
                    .group_by(Incident.severity)
                ).all()
            )
            box = outbox.stats(session, now)
            last = session.scalars(
                sa.select(SyncRun).where(SyncRun.finished_at.is_not(None)).order_by(SyncRun.id.desc()).limit(1)
            ).first()
            good_at = session.scalar(
                sa.select(SyncRun.finished_at).where(SyncRun.status == "succeeded").order_by(SyncRun.id.desc()).limit(1)
            )
            holder = holder_of(session, self.lease, now=now)
        out: list[Metric] = []
        incidents = _gauge("dnabot_open_incidents", "Incidents not resolved, by severity.", labels=["severity"])
        for sev in sorted(set(SEVERITIES) | {str(s) for s in severities}):
            incidents.add_metric([sev], severities.get(sev, 0))
        out.append(incidents)
        pending = _gauge("dnabot_outbox_pending", "Outbox rows waiting for delivery, by kind.", labels=["kind"])
        for kind, count in sorted(box.pending_by_kind.items()):
            pending.add_metric([kind], count)
        out += [
            pending,
            _gauge("dnabot_outbox_dead", "Outbox rows that gave up after too many attempts.", box.dead),
            _gauge(
                "dnabot_outbox_oldest_pending_age_seconds",
                "Age of the oldest pending outbox row (0 when none is pending).",
                box.oldest_pending_age_seconds or 0.0,
            ),
        ]
        out += self._sync_gauges(last, _aware(good_at), now)
        leader = _gauge("dnabot_leader", "1 if this replica holds the scheduler lease, else 0.", labels=["replica"])
        leader.add_metric([self.replica], int(holder == self.replica))
        out.append(leader)
        return out

    @staticmethod
    def _sync_gauges(last: SyncRun | None, good_at: datetime | None, now: datetime) -> list[Metric]:
        out: list[Metric] = []
        if last is not None and last.finished_at is not None:
            finished, started = _aware(last.finished_at), _aware(last.started_at)
            assert finished is not None and started is not None
            out += [
                _gauge(
                    "dnabot_last_sync_success",
                    "1 if the last finished sync run succeeded, else 0.",
                    int(last.status == "succeeded"),
                ),
                _gauge(
                    "dnabot_last_sync_duration_seconds",
                    "Duration of the last finished sync run.",
                    (finished - started).total_seconds(),
                ),
                _gauge(
                    "dnabot_last_sync_timestamp_seconds",
                    "When the last sync run finished (Unix time).",
                    finished.timestamp(),
                ),
            ]
        if good_at is not None:
            out.append(
                _gauge(
                    "dnabot_last_good_sync_age_seconds",
                    "Seconds since the last successful sync run finished (the age of the data answers use).",
                    max(0.0, (now - good_at).total_seconds()),
                )
            )
        return out


class _Exposition:
    """The process registry plus one store collector, as one thing `generate_latest` can read."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


_collectors: dict[tuple[str | None, str], StoreCollector] = {}
_collectors_lock = threading.Lock()


def _metrics_engine(url: str | None) -> Engine:
    """An engine that holds no idle connection between scrapes (one connect per scrape costs little next to
    a scrape interval) and, on PostgreSQL, gives up connecting after 3 s so a dead database cannot stall one."""
    parsed = db.normalise_url(url)
    if parsed.get_backend_name() == "postgresql":
        return db.make_engine(parsed, poolclass=NullPool, connect_args={"connect_timeout": 3})
    if parsed.database in (None, "", ":memory:"):
        return db.make_engine(parsed)  # a private in-memory database: empty, but the scrape still answers
    return db.make_engine(parsed, poolclass=NullPool)


def store_collector(settings: Settings) -> StoreCollector:
    """The store collector for `settings`' database (one per database and replica, engine made at first use)."""
    replica = replica_id(settings.replica_id)
    key = (settings.database_url, replica)
    with _collectors_lock:
        collector = _collectors.get(key)
        if collector is None:
            url = settings.database_url
            collector = _collectors[key] = StoreCollector(lambda: _metrics_engine(url), replica=replica)
        return collector


def render(settings: Settings) -> tuple[bytes, str]:
    """The Prometheus text exposition of this process's metrics and the store's gauges, and its content type."""
    return generate_latest(_Exposition(REGISTRY, store_collector(settings))), CONTENT_TYPE_PLAIN_0_0_4
