"""Ack-latency benchmark: signed `/dna` slash commands at a fixed rate against one `dnabot serve` in HTTP mode.

Setup, all on loopback: the OpenMetadata simulator (demo catalog) and the fake Slack Web API (which also records
what arrives at each `response_url`) run in this process; a fresh store (SQLite, or a throwaway PostgreSQL
database with `--postgres`) gets a first `dnabot sync`; then ONE `dnabot serve --http` runs as a child process,
exactly as in production, and its start-up tick is allowed to finish before anything is measured.

The load is open-loop: request i is due at t0 + i/rate and is sent then, whatever earlier requests are doing.
The ack latency of a request is measured from its due time to the HTTP response of `POST /slack/events`, so a
slow server or a late client is never hidden (no coordinated omission). The reply latency is due time → the
bot's answer arriving at the request's `response_url`; every answer is checked against what the command should
say.

Prints p50/p90/p99/max ack latency (overall and per command), reply latency, errors and the replica's RSS and
CPU, then one JSON line. Exits 1 when any request failed: a non-200 ack, an ack slower than Slack's 3 s, a
missing or wrong answer. Target (2 cores): p99 ≤ 300 ms at 20 req/s.
Usage: `python bench/ack_bench.py [--rate 20] [--duration 30] [--mix help,show,incidents,status,blast]
[--table stg_orders] [--postgres]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib  # bench/ is the script directory: first on sys.path
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import Catalog, create_app, run_in_thread  # noqa: E402
from tests.fakes.slack_api import create_app as create_slack_app  # noqa: E402
from tests.fakes.slack_signing import signed_headers, slash_command  # noqa: E402
from tests.fakes.slack_state import SlackState  # noqa: E402

DNABOT = ROOT / ".venv" / "bin" / "dnabot"
OM_TOKEN = "bench-om-token"
SLACK_ACK_LIMIT_MS = 3000.0  # Slack shows the user an error when the ack takes longer
TARGET_P99_MS = 300.0
# Keys that would make the replica call an LLM or MCP servers; the bench measures the bot alone.
NO_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG")

# command kind → (`/dna` text, the start of the answer's fallback text); {table} is --table
COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("help", "DNA Bot help"),
    "show": ("show {table}", "DNA of "),
    "incidents": ("incidents", ""),  # "<n> incident(s)": checked by suffix below
    "status": ("status", "DNA Bot status"),
    "blast": ("blast {table}", "Blast radius of "),
}


@dataclass
class Sample:
    """One slash command: what was sent, when it was due, and what came back."""

    kind: str
    rid: str
    due: float
    ack_ms: float | None = None
    status: int | None = None
    error: str | None = None


@dataclass
class Replies:
    """First arrival time and payload of each `response_url` POST, filled by the fake Slack's thread."""

    arrivals: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def timed(app: Any, replies: Replies) -> Callable[..., Any]:
    """Wrap the fake Slack ASGI app to note when each `response_url/<rid>` POST arrives."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/response_url/"):
            now = time.perf_counter()
            with replies.lock:
                replies.arrivals.setdefault(scope["path"].rsplit("/", 1)[1], now)
        await app(scope, receive, send)

    return wrapper


def fresh_db(postgres: bool, workdir: Path) -> tuple[str, Callable[[], None]]:
    return benchlib.fresh_db(postgres, workdir, "dnabot_ackbench")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "n": len(values),
        "p50": r(percentile(values, 50)),
        "p90": r(percentile(values, 90)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
    }


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dnabot serve exited with code {proc.returncode} while waiting for {what}")
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def healthz(base: str) -> dict[str, Any] | None:
    try:
        reply = httpx.get(f"{base}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return reply.json() if reply.status_code == 200 else None


def settle(base: str, state: SlackState, first_run: int, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait for the start-up tick (a sync run newer than the first sync, finished) and a quiet Slack API."""
    try:
        wait_until(
            lambda: (
                (h := healthz(base))
                and h.get("last_sync")
                and h["last_sync"]["id"] > first_run
                and h["last_sync"]["finished_at"]
            ),
            timeout,
            "the start-up tick",
            proc,
        )
        note = "start-up tick finished"
    except TimeoutError:
        note = f"no start-up tick within {timeout:.0f} s; measuring anyway"
    last, quiet_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 1.0:
        with state.cond:
            count = len(state.calls)
        if count != last:
            last, quiet_since = count, time.monotonic()
        time.sleep(0.1)
    return note


class RssSampler(threading.Thread):
    """Samples the replica's RSS every 250 ms; `peak` and `last` in bytes."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.last = self.process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            try:
                self.last = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)


async def load(
    url: str, secret: str, slack_root: str, plan: list[tuple[str, str]], rate: float, timeout: float
) -> tuple[list[Sample], float]:
    """Send `plan` (kind, text) open-loop at `rate` per second; returns the samples and the largest send lag (ms)."""
    samples: list[Sample] = []
    lag_ms = 0.0
    # Connections are reused (as a load balancer would), but dropped after 2 s idle: uvicorn closes idle ones
    # after 5 s, and reusing one at that very moment fails with a ReadError that says nothing about the bot.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def send(sample: Sample, body: str, content_type: str) -> None:
            headers = signed_headers(body, content_type, secret)
            try:
                reply = await client.post(url, content=body, headers=headers)
                sample.status = reply.status_code
                if reply.status_code != 200:
                    sample.error = f"HTTP {reply.status_code}: {reply.text[:120]}"
            except httpx.HTTPError as exc:
                sample.error = f"{type(exc).__name__}: {exc}"
            sample.ack_ms = (time.perf_counter() - sample.due) * 1000

        tasks = []
        t0 = time.perf_counter() + 0.05
        for i, (kind, command_text) in enumerate(plan):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lag_ms = max(lag_ms, (time.perf_counter() - due) * 1000)
            sample = Sample(kind=kind, rid=f"ack{i}", due=due)
            samples.append(sample)
            body, content_type = slash_command(command_text, response_url=f"{slack_root}/response_url/{sample.rid}")
            tasks.append(asyncio.create_task(send(sample, body, content_type)))
        await asyncio.gather(*tasks)
    return samples, lag_ms


def check_reply(kind: str, replies: list[dict[str, Any]]) -> str | None:
    """Why the answers to one command are wrong, or None when the first one says what `kind` should."""
    if not replies:
        return "no answer at its response_url"
    said = str(replies[0].get("text") or "")
    expected = COMMANDS[kind][1]
    ok = said.endswith("incident(s)") if kind == "incidents" else said.startswith(expected)
    return None if ok else f"unexpected answer {said[:100]!r}"


def parse_mix(mix: str) -> list[str]:
    """`help,show:2,status` → the round-robin order of command kinds (weights repeat a kind)."""
    kinds: list[str] = []
    for item in filter(None, (part.strip() for part in mix.split(","))):
        kind, _, weight = item.partition(":")
        if kind not in COMMANDS:
            raise SystemExit(f"unknown command kind {kind!r}; choose from {', '.join(COMMANDS)}")
        kinds += [kind] * (int(weight) if weight else 1)
    if not kinds:
        raise SystemExit("--mix names no command")
    return kinds


def start_replica(env: dict[str, str], workdir: Path, port: int) -> subprocess.Popen[bytes]:
    with (workdir / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(DNABOT), "serve", "--http", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,  # no stray .env from the checkout
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc


def stop_replica(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Set everything up, measure, tear down; returns the figures and the failures."""
    kinds = parse_mix(args.mix)
    total = int(args.rate * args.duration)
    plan = [(k, COMMANDS[k][0].format(table=args.table)) for k in itertools.islice(itertools.cycle(kinds), total)]

    replies = Replies()
    state = SlackState()
    slack = run_in_thread(timed(create_slack_app(state), replies))
    state.base_url = slack.url
    om = run_in_thread(create_app(Catalog.demo(), token=OM_TOKEN))
    workdir = Path(tempfile.mkdtemp(prefix="dnabot-ackbench-"))
    db_url, drop = fresh_db(args.postgres, workdir)
    secret = secrets.token_hex(16)
    port = benchlib.free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in NO_KEYS and not k.startswith(("SLACK_", "DNABOT_"))}
    env |= {
        "DATABASE_URL": db_url,
        "OPENMETADATA_URL": om.url,
        "OPENMETADATA_TOKEN": OM_TOKEN,
        "SLACK_API_URL": f"{slack.url}/api/",
        "SLACK_BOT_TOKEN": state.token,
        "SLACK_SIGNING_SECRET": secret,
        "DNABOT_CHANNEL": "C1",
        "DNABOT_SYNC_INTERVAL_SECONDS": str(args.sync_interval),
    }
    proc: subprocess.Popen[bytes] | None = None
    try:
        first = subprocess.run([str(DNABOT), "sync", "--json"], cwd=workdir, env=env, capture_output=True, text=True)
        if first.returncode != 0:
            raise RuntimeError(f"the first `dnabot sync` failed ({first.returncode}): {first.stderr[-2000:]}")
        first_sync = json.loads(first.stdout)
        proc = start_replica(env, workdir, port)
        wait_until(lambda: healthz(base), 60, "GET /healthz", proc)
        note = settle(base, state, first_sync["run_id"], proc, args.settle)
        sampler = RssSampler(proc.pid)
        rss_before = sampler.last
        cpu_before = sum(sampler.process.cpu_times()[:2])
        sampler.start()
        wall = time.perf_counter()
        samples, lag_ms = asyncio.run(load(f"{base}/slack/events", secret, slack.url, plan, args.rate, args.timeout))
        sent_s = time.perf_counter() - wall

        def answered() -> bool:
            with state.cond:
                return all(s.rid in state.responses for s in samples if s.error is None)

        with contextlib.suppress(TimeoutError):  # a missing answer is reported as a failure below
            wait_until(answered, args.reply_timeout, "every answer", proc)
        cpu_s = sum(sampler.process.cpu_times()[:2]) - cpu_before
        load_wall = time.perf_counter() - wall
        sampler.stopped.set()
        sampler.join()
        return figures(
            args, samples, replies, state, first_sync, note, sampler, rss_before, cpu_s, load_wall, sent_s, lag_ms
        )
    except Exception:
        if proc is not None:
            sys.stderr.write((workdir / "serve.log").read_text("utf-8", "replace")[-4000:])
        raise
    finally:
        if proc is not None:
            stop_replica(proc)
        om.stop()
        slack.stop()
        drop()
        shutil.rmtree(workdir, ignore_errors=True)


def figures(
    args: argparse.Namespace,
    samples: list[Sample],
    replies: Replies,
    state: SlackState,
    first_sync: dict[str, Any],
    note: str,
    sampler: RssSampler,
    rss_before: int,
    cpu_s: float,
    load_wall: float,
    sent_s: float,
    lag_ms: float,
) -> tuple[dict[str, Any], list[str]]:
    """The figures of one run, and a line per failed request."""
    failures: list[str] = []
    acks = [s.ack_ms for s in samples if s.error is None and s.ack_ms is not None]
    reply_ms: list[float] = []
    with state.cond:
        answers = {s.rid: list(state.responses.get(s.rid, [])) for s in samples}
    for s in samples:
        if s.error is not None:
            failures.append(f"{s.rid} ({s.kind}): ack failed: {s.error}")
            continue
        if s.ack_ms is not None and s.ack_ms > SLACK_ACK_LIMIT_MS:
            failures.append(f"{s.rid} ({s.kind}): ack took {s.ack_ms:.0f} ms (> Slack's 3 s)")
        problem = check_reply(s.kind, answers[s.rid])
        if problem:
            failures.append(f"{s.rid} ({s.kind}): {problem}")
        with replies.lock:
            arrived = replies.arrivals.get(s.rid)
        if arrived is not None:
            reply_ms.append((arrived - s.due) * 1000)
    by_kind = {
        kind: summary([s.ack_ms for s in samples if s.kind == kind and s.error is None and s.ack_ms is not None])
        for kind in dict.fromkeys(s.kind for s in samples)
    }
    ack = summary(acks)
    return {
        "store": "postgresql" if args.postgres else "sqlite",
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "requests": len(samples),
        "sent_in_s": round(sent_s, 2),
        "max_send_lag_ms": round(lag_ms, 1),
        "errors": len(failures),
        "ack_ms": ack,
        "ack_ms_by_command": by_kind,
        "reply_ms": summary(reply_ms),
        "replica_rss_mb": {
            "before": round(rss_before / 2**20, 1),
            "peak": round(sampler.peak / 2**20, 1),
            "after": round(sampler.last / 2**20, 1),
        },
        "replica_cpu_percent": round(100 * cpu_s / load_wall, 1) if load_wall else None,
        "first_sync": {k: first_sync.get(k) for k in ("entities_seen", "duration_seconds")},
        "settle": note,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": ack["p99"] is not None and ack["p99"] <= TARGET_P99_MS and not failures,
    }, failures


def report(result: dict[str, Any], failures: list[str]) -> None:
    def row(name: str, s: dict[str, Any]) -> str:
        return f"  {name:<12} n={s['n']:<5} p50={s['p50']}  p90={s['p90']}  p99={s['p99']}  max={s['max']}"

    print(
        f"ack latency, {result['requests']} signed /dna commands at {result['rate_per_s']}/s for "
        f"{result['duration_s']} s against one `dnabot serve --http` ({result['store']} store), ms from due time:"
    )
    print(row("all", result["ack_ms"]))
    for kind, s in result["ack_ms_by_command"].items():
        print(row(kind, s))
    print(row("answer", result["reply_ms"]) + "   (due time → the answer at response_url)")
    rss = result["replica_rss_mb"]
    print(
        f"replica: RSS {rss['before']} MB before, {rss['peak']} MB peak, {rss['after']} MB after; "
        f"CPU {result['replica_cpu_percent']} % of one core during the load"
    )
    print(f"client: largest send lag {result['max_send_lag_ms']} ms; {result['settle']}")
    verdict = "met" if result["target_met"] else "MISSED"
    print(f"errors: {result['errors']}; target p99 ≤ {result['target_p99_ms']:.0f} ms: {verdict}")
    for line in failures[:20]:
        print(f"  FAILED {line}")
    if len(failures) > 20:
        print(f"  … and {len(failures) - 20} more")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="slash commands per second (default 20)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument(
        "--mix",
        default="help,show,incidents,status,blast",
        help="command kinds sent round-robin, optional weights: help,show:2,… (default: one of each)",
    )
    parser.add_argument("--table", default="stg_orders", help="the dataset for show and blast (default stg_orders)")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database on 127.0.0.1:5432")
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=900,
        help="DNABOT_SYNC_INTERVAL_SECONDS of the replica (default 900: no scheduled sync during the load)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout of one request (s)")
    parser.add_argument("--reply-timeout", type=float, default=30.0, help="how long to wait for the answers (s)")
    parser.add_argument("--settle", type=float, default=60.0, help="how long to wait for the start-up tick (s)")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0:
        raise SystemExit("--rate and --duration must be positive")
    result, failures = run(args)
    report(result, failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
