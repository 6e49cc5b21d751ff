"""Real `dnabot serve` processes (HTTP mode) on one PostgreSQL database, for the multi-replica tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

from tests.fakes.slack_signing import signed_headers

T = TypeVar("T")
SECRET = "e2e-signing-secret"
CHANNEL = "C0INCIDENTS"
DNABOT = Path(sys.executable).with_name("dnabot")
SCRUBBED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition", every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(every)


@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        command = [str(DNABOT), "serve", "--http", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"replica {self.name} exited:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def post(self, body: tuple[str, str], *, retry_num: int | None = None) -> httpx.Response:
        text, content_type = body
        headers = signed_headers(text, content_type, SECRET)
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return httpx.post(f"{self.url}/slack/events", content=text.encode(), headers=headers, timeout=10)


@dataclass
class ReplicaSet:
    database_url: str
    om: Any
    slack: Any
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        env |= {
            "DATABASE_URL": self.database_url,
            "OPENMETADATA_URL": self.om.url,
            "OPENMETADATA_TOKEN": self.om.token,
            "SLACK_API_URL": self.slack.url,
            "SLACK_BOT_TOKEN": self.slack.token,
            "SLACK_SIGNING_SECRET": SECRET,
            "DNABOT_CHANNEL": CHANNEL,
            "DNABOT_SYNC_INTERVAL_SECONDS": "2",
            "DNABOT_OUTBOX_POLL_SECONDS": "0.3",
            "DNABOT_OUTBOX_CLAIM_SECONDS": "4",
            "DNABOT_OUTBOX_MAX_BACKOFF_SECONDS": "2",
            "DNABOT_OM_MAX_RETRIES": "1",
            "DNABOT_REPLICA_ID": name,
            "PYTHONUNBUFFERED": "1",
        }
        return env | self.extra_env

    def start(self, count: int = 3) -> list[Replica]:
        for n in range(count):
            name = f"r{n}"
            replica = Replica(name, free_port(), self.env(name), self.tmp / f"{name}.log")
            self.replicas.append(replica)
            replica.start()
        for replica in self.replicas:
            wait_until(replica.healthy, 60, f"replica {replica.name} healthy")
        return self.replicas

    def by_name(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def logs(self) -> str:
        return "\n".join(f"==== {r.name}\n{r.log()}" for r in self.replicas)

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params))
        finally:
            engine.dispose()
