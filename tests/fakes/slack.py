"""Fixtures for the loopback Slack: `slack_api` (Web API + response_url recorder) and `slack_socket` (Socket Mode).

The Web API is strict: it refuses what Slack refuses (tests/fakes/slack_blocks.py), and a test during which the bot
sent anything refused, or against the bot's own Slack rules, fails at teardown with the list. A test that means to
provoke one says so: `slack_api.expect_refusals("invalid_blocks")` or `@pytest.mark.slack_refusals("no_text")`."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from simulator import ServerHandle, run_in_thread
from tests.fakes.slack_api import create_app
from tests.fakes.slack_socket import SocketModeServer
from tests.fakes.slack_state import BOT, Call, Fault, Refused, SlackState, Stub

T = TypeVar("T")


@dataclass
class SlackAPI:
    """A handle on the running fake: where to point `WebClient`, what it received, and fault injection."""

    state: SlackState
    handle: ServerHandle = field(repr=False)

    @property
    def url(self) -> str:
        """The `base_url` for `WebClient` (ends in `/api/`)."""
        return f"{self.handle.url}/api/"

    @property
    def root(self) -> str:
        """The server root, `http://127.0.0.1:PORT`."""
        return self.handle.url

    @property
    def token(self) -> str:
        """The only bot token accepted (`xoxb-…`); anything else gets `invalid_auth`."""
        return self.state.token

    @property
    def app_token(self) -> str:
        """The app-level token (`xapp-…`) accepted by `apps.connections.open`."""
        return self.state.app_token

    @property
    def bot_user_id(self) -> str:
        """The bot's user id as `auth.test` reports it."""
        return BOT["user_id"]

    def response_url(self, rid: str) -> str:
        """A `response_url` to put in test payloads; what `respond()` sends there is in `responses(rid)`."""
        return f"{self.handle.url}/response_url/{rid}"

    # ---- what was received ----------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Every request received (failed, unauthorised and unknown ones too), oldest first."""
        with self.state.cond:
            return [c for c in self.state.calls if method is None or c.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """All messages in `channel` (parents and replies) in posting order, with ts/thread_ts/blocks/metadata."""
        with self.state.cond:
            return copy.deepcopy(self.state.messages.get(channel, []))

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """The current state of one message (raises KeyError if unknown)."""
        found = [m for m in self.messages(channel) if m["ts"] == ts]
        if not found:
            raise KeyError(f"no message {ts} in {channel}")
        return found[0]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The parent `ts` followed by its replies, in order."""
        return [m for m in self.messages(channel) if m["ts"] == ts or m.get("thread_ts") == ts]

    def parents(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages only (thread replies excluded unless broadcast)."""
        return [m for m in self.messages(channel) if m.get("thread_ts") in (None, m["ts"]) or m.get("reply_broadcast")]

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
        """`chat.postEphemeral` messages (with `channel` and `ephemeral_user`)."""
        with self.state.cond:
            return [
                copy.deepcopy(m)
                for m in self.state.ephemerals
                if (channel is None or m["channel"] == channel) and (user is None or m["ephemeral_user"] == user)
            ]

    @property
    def files(self) -> list[dict[str, Any]]:
        """Completed uploads: `id, name, title, content (bytes), length, channel, thread_ts, initial_comment`."""
        with self.state.cond:
            return copy.deepcopy(self.state.files)

    def views_published(self, user: str) -> list[dict[str, Any]]:
        """Every home view published for `user`, oldest first."""
        with self.state.cond:
            return copy.deepcopy(self.state.published.get(user, []))

    def views(self) -> dict[str, dict[str, Any]]:
        """Every view by id (opened, updated or published) in its latest version."""
        with self.state.cond:
            return copy.deepcopy(self.state.views)

    def responses(self, rid: str) -> list[dict[str, Any]]:
        """Payloads POSTed to `response_url(rid)` (`response_type`, `replace_original`, `text`, `blocks`, …)."""
        with self.state.cond:
            return copy.deepcopy(self.state.responses.get(rid, []))

    def refusals(self, error: str | None = None) -> list[Refused]:
        """What Slack would have refused (`kind="refused"`) or the bot's rules forbid (`kind="policy"`), in order."""
        with self.state.cond:
            return [r for r in self.state.refused if error is None or r.error == error]

    def expect_refusals(self, *errors: str) -> None:
        """Declare that this test provokes these Slack errors / policy codes (else teardown fails the test)."""
        with self.state.cond:
            self.state.expected.update(errors)

    @property
    def strict(self) -> bool:
        """Whether payloads are judged as Slack would (the default in every test); False accepts anything."""
        return self.state.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        with self.state.cond:
            self.state.strict = value

    def unexpected_refusals(self) -> list[Refused]:
        """The refusals and policy findings this test did not declare."""
        with self.state.cond:
            return [r for r in self.state.refused if r.error not in self.state.expected]

    # ---- configuration and faults ---------------------------------------------------------------------------

    def users(self, directory: dict[str, str]) -> None:
        """Set the directory (email → user id) behind `users.lookupByEmail` and the emails in `users.info`."""
        with self.state.cond:
            self.state.directory.clear()
            self.state.directory.update(directory)

    def usergroups(self, groups: dict[str, list[str]]) -> None:
        """Set the members behind `usergroups.users.list` (group id → user ids)."""
        with self.state.cond:
            self.state.usergroups.clear()
            self.state.usergroups.update(groups)

    def user_message(
        self, channel: str, text: str, *, user: str = "U2", ts: str | None = None, thread_ts: str | None = None
    ) -> str:
        """Seed a message a human wrote (e.g. the one an `app_mention` event refers to); returns its `ts`."""
        with self.state.cond:
            message = {"type": "message", "ts": ts or self.state.next_ts(), "user": user, "text": text}
            self.state.store(channel, message | {"channel": channel} | ({"thread_ts": thread_ts} if thread_ts else {}))
            self.state.cond.notify_all()
            return message["ts"]

    def stub(self, method: str, reply: Stub) -> None:
        """Answer `method` with `{"ok": true} | reply`, or with `reply(args)` as the whole body if callable."""
        with self.state.cond:
            self.state.stubs[method] = reply

    def fail(
        self,
        method: str,
        *,
        status: int | None = None,
        retry_after: int | None = 1,
        times: int = 2,
        error: str | None = None,
    ) -> None:
        """Fail the next `times` calls of `method`: HTTP `status` (429 by default, with `Retry-After`), or
        with `error=` alone an HTTP 200 `{"ok": false, "error": error}`."""
        if status is None:
            status = 200 if error is not None else 429
        fault = Fault(status=status, retry_after=retry_after if status == 429 else None, error=error, times=times)
        with self.state.cond:
            self.state.faults.setdefault(method, []).append(fault)

    def stall(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Carry out the next `times` calls of `method` but hold each answer back for `seconds` (a caller
        that dies meanwhile has posted without knowing it)."""
        with self.state.cond:
            self.state.stalls.setdefault(method, []).extend([seconds] * times)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Return `predicate()`'s first truthy value; re-checked after each request, at least every 50 ms."""
        deadline = time.monotonic() + timeout
        with self.state.cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s; calls: {self._summary()}")
                self.state.cond.wait(min(remaining, 0.05))

    def _summary(self) -> list[str]:
        refused = [f"{r.method} refused: {r.error}" for r in self.state.refused if r.kind == "refused"]
        return [c.method for c in self.state.calls] + refused

    def reset(self) -> None:
        """Forget everything recorded and configured."""
        self.state.reset()


@pytest.fixture(scope="session")
def _slack_server() -> Iterator[SlackAPI]:
    state = SlackState()
    handle = run_in_thread(create_app(state))
    state.base_url = handle.url
    try:
        yield SlackAPI(state=state, handle=handle)
    finally:
        handle.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slack_refusals(*errors): Slack errors / policy codes this test means the loopback Slack to record"
    )


def refusal_report(refused: list[Refused]) -> str:
    """The teardown message: every unexpected refusal, with Slack's reasons and the blocks concerned."""
    slack = sum(1 for r in refused if r.kind == "refused")
    head = (
        f"The loopback Slack saw {slack} payload(s) real Slack refuses and {len(refused) - slack} against the bot's "
        "Slack rules (declare expected ones with slack_api.expect_refusals(...) or @pytest.mark.slack_refusals):"
    )
    return "\n".join([head, *(f"  #{i} {r.describe()}" for i, r in enumerate(refused, 1))])


@pytest.fixture
def slack_api(
    _slack_server: SlackAPI, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[SlackAPI]:
    """The loopback Slack Web API, empty and strict at the start of each test (one server per session); the test
    fails at teardown if the bot sent anything Slack refuses that the test did not declare."""
    for var in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    _slack_server.reset()
    for marker in request.node.iter_markers("slack_refusals"):
        _slack_server.expect_refusals(*marker.args)
    yield _slack_server
    try:
        unexpected = _slack_server.unexpected_refusals()
    finally:
        _slack_server.reset()
    if unexpected:
        pytest.fail(refusal_report(unexpected), pytrace=False)


@pytest.fixture
def slack_socket(slack_api: SlackAPI) -> Iterator[SocketModeServer]:
    """A Socket Mode WebSocket server; `apps.connections.open` (with `slack_api.app_token`) answers its URL."""
    server = SocketModeServer()
    with slack_api.state.cond:
        slack_api.state.socket_url = server.url
    try:
        yield server
    finally:
        server.stop()
