"""The shape of `dnabot` as a new user meets it: a fast --help, --version and --debug, --json everywhere, exit codes
as the README documents them, one line per error, no store file on a config error, whole-secret masking."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bot.cli import commands as cli
from bot.cli.terminal_text import Name, mrkdwn
from bot.core.logs import Redactor
from bot.core.settings import get_settings
from storage.openmetadata.http import OMHttp
from storage.redact import mask_secrets, scrub

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("slack_bolt", "slack_sdk", "alembic", "sqlalchemy", "httpx", "agents", "storage.sync.run", "bot.core.services")
NO_DATA = {"serve", "simulator", "demo"}  # they run a server or the demo's story: nothing for a script to read
STG_ORDERS = "warehouse.shop.staging.stg_orders"


def heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def commands() -> dict[str, typer.main.TyperCommand]:
    return dict(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("COLUMNS", None)
    return env


def test_help_of_every_command_imports_nothing_heavy():
    code = (
        "import json, sys\n"
        "import typer\n"
        "from typer.testing import CliRunner\n"
        "from bot.cli import commands as cli\n"
        "names = sorted(typer.main.get_command(cli.app).commands)\n"
        "runner = CliRunner()\n"
        "for args in [['--help'], ['--version'], *[[n, '--help'] for n in names]]:\n"
        "    result = runner.invoke(cli.app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "print(json.dumps({'commands': names, 'modules': sorted(sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert {"sync", "dna", "why", "outbox", "outbox-retry"} <= set(seen["commands"])
    assert heavy(seen["modules"]) == []


def test_a_real_dnabot_help_process_lists_every_command_and_imports_nothing_heavy():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot.cli", "--help"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "outbox-retry" in done.stdout and "--version" in done.stdout  # `python -m bot.cli` has them all
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "typer" in imported and heavy(imported) == []


def test_every_option_and_argument_has_help_text():
    missing = [
        f"{name} {param.name}"
        for name, command in commands().items()
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == []


def test_every_command_that_prints_data_has_json():
    without = [name for name, command in commands().items() if name not in NO_DATA]
    assert [n for n in without if "--json" not in [o for p in commands()[n].params for o in p.opts]] == []
    assert len(without) >= 15


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_version_prints_the_installed_version(dnabot):
    result = dnabot("--version")
    assert result.exit_code == 0 and result.stdout == f"dnabot {version('dnabot')}\n"


def test_exit_code_2_for_what_the_user_typed_or_configured(dnabot, monkeypatch):
    assert dnabot("sync", "--json").exit_code == 0
    for args, words in (
        (("incident", "99"), "no incident 99"),
        (("resolve", "42"), "no incident 42"),
        (("ack", "42", "--json"), "no incident 42"),
        (("dna", "stg_orders", "--at", "2001-01-01"), "no DNA snapshot at 2001-01-01"),
        (("dna", "stg_orders", "--at", "yesterday-ish"), "ISO 8601"),
        (("incidents", "closed"), "not a status"),
    ):
        result = dnabot(*args)
        assert result.exit_code == 2, (args, result.output)
        assert words in one_error_line(result), args
    assert dnabot("runs", "--limit", "0").exit_code == 2  # typer's own usage errors keep their code

    monkeypatch.setenv("DNABOT_OM_CONCURRENCY", "lots")
    invalid = dnabot("runs")
    assert invalid.exit_code == 2 and "DNABOT_OM_CONCURRENCY" in one_error_line(invalid)


def test_an_error_about_a_name_with_brackets_shows_the_name_as_typed(dnabot):
    assert dnabot("sync", "--json").exit_code == 0
    result = dnabot("dna", "orders[bold]x[/bold]")
    assert result.exit_code == 2
    assert "orders[bold]x[/bold]" in one_error_line(result)


def test_exit_code_1_for_a_store_or_server_problem(dnabot, monkeypatch):
    empty = dnabot("incidents")
    assert empty.exit_code == 1 and "run `dnabot sync` first" in one_error_line(empty)
    monkeypatch.setenv("OPENMETADATA_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("DNABOT_OM_MAX_RETRIES", "0")
    down = dnabot("sync")
    assert down.exit_code == 1 and "127.0.0.1:9" in down.output and "Traceback" not in down.output


def test_a_missing_openmetadata_url_is_one_line_exit_2_and_creates_no_store(dnabot, monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL")  # the default store: ./dnabot.db
    monkeypatch.delenv("OPENMETADATA_URL")
    for args in (("sync",), ("sync", "--json")):
        result = dnabot(*args)
        assert result.exit_code == 2 and "OPENMETADATA_URL is not set" in one_error_line(result)
        assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_questions_to_a_store_that_does_not_exist_yet_create_no_file(dnabot, monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL")  # the default store: ./dnabot.db, not there yet
    for args in (("incidents",), ("dna", "orders"), ("runs", "--json"), ("blast", "stg_orders")):
        result = dnabot(*args)
        assert result.exit_code == 1 and "run `dnabot sync` first" in one_error_line(result), args
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_json_of_migrate_outbox_and_outbox_retry(dnabot):
    migrated = dnabot("migrate", "--json")
    assert migrated.exit_code == 0 and json.loads(migrated.stdout)["revision"] not in ("", "base")
    assert json.loads(dnabot("outbox", "--json").stdout) == []
    retried = dnabot("outbox-retry", "--all", "--json")
    assert retried.exit_code == 0 and json.loads(retried.stdout) == {"requeued": 0}


def test_json_of_every_incident_move(dnabot, om_demo):
    assert dnabot("sync").exit_code == 0
    [first] = [i["id"] for i in json.loads(dnabot("incidents", "--json").stdout)]  # the demo's failing test
    for args, status in ((("ack",), "acknowledged"), (("resolve",), "resolved"), (("reopen",), "open")):
        result = dnabot(*args, str(first), "--by", "ana", "--json")
        assert result.exit_code == 0 and json.loads(result.stdout)["status"] == status


@pytest.fixture
def failing_runs(monkeypatch):
    """`dnabot runs` hits a bug whose message carries the configured OpenMetadata token."""
    from bot.core import services

    def broken(settings, limit):
        raise RuntimeError(f"cursor gone while reading with {settings.openmetadata_token.get_secret_value()}\nsecond")

    monkeypatch.setattr(services, "runs", broken)


def test_an_unexpected_error_is_two_lines_with_secrets_masked(dnabot, failing_runs, om_demo):
    result = dnabot("runs")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "error: RuntimeError: cursor gone while reading with *** second",
        "(run with --debug for the traceback)",
    ]


def test_debug_shows_the_traceback_still_masked(dnabot, failing_runs, om_demo):
    result = dnabot("--debug", "runs")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "in broken" in result.stderr
    assert om_demo.token not in result.output


@pytest.fixture
def unguarded_command():
    """A command another module adds without `_guard` (as `doctor` or `serve` may)."""

    @cli.app.command("explode", help="Fails with a bug.")
    def explode() -> None:
        {}["missing"]

    yield
    cli.app.registered_commands.pop()


def test_a_command_without_guard_gets_the_same_short_error(dnabot, unguarded_command):
    result = dnabot("explode")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: KeyError: 'missing'", "(run with --debug for the traceback)"]
    assert "Traceback" in dnabot("--debug", "explode").stderr


MASKERS = {
    "scrub": lambda text, secret: scrub(text, [secret]),
    "mask_secrets": lambda text, secret: mask_secrets(text, [secret]),
    "log-redactor": lambda text, secret: Redactor([secret])(text),
    "om-http": lambda text, secret: OMHttp("http://om.example", secret).redact(text),
}


@pytest.mark.parametrize(
    ("masker", "secret"),
    [
        ("scrub", "plan"),
        ("mask_secrets", "plan"),
        ("mask_secrets", "ex"),
        ("log-redactor", "planet"),
        ("om-http", "x"),  # was "e***planation"
        ("om-http", "plan"),
    ],
)
def test_a_short_secret_is_masked_whole_never_inside_words(masker, secret):
    text = f"an explanation of the planetary planned {secret}: token={secret} ({secret}) ex-{secret}-2 {secret}s"
    assert MASKERS[masker](text, secret) == (
        f"an explanation of the planetary planned ***: token=*** (***) ex-{secret}-2 {secret}s"
    )


def test_whole_secrets_are_masked_in_their_encoded_forms_too():
    secret = 'p/a"n+1'
    text = 'url ?k=p%2Fa%22n%2B1&x=1, json {"k": "p/a\\"n+1"}, plain p/a"n+1.'
    assert mask_secrets(text, [secret]) == 'url ?k=***&x=1, json {"k": "***"}, plain ***.'


@pytest.fixture
def broken_store(dnabot, om_demo, monkeypatch):
    """The demo store after a sync, a breaking rename and a second sync: incident 1 (a failing test) and the
    rename's incident; `run(COLUMNS, *args)` runs a command in a terminal that wide."""
    from urllib.parse import quote

    from rich.console import Console

    assert dnabot("sync").exit_code == 0
    path = f"/admin/tables/{quote(STG_ORDERS, safe='')}/columns/status/rename"
    om_demo.admin("POST", path, {"newName": "order_state"})
    [rename] = json.loads(dnabot("sync", "--json").stdout)["incidents"]["opened"]
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(cli, "console", Console())  # its width comes from COLUMNS at each print
    runner = CliRunner()

    def run(columns: int, *args: str) -> str:
        get_settings.cache_clear()
        result = runner.invoke(cli.app, list(args), env={"COLUMNS": str(columns)})
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    return rename, run


def words(text: str, shortest: int = 1) -> set[str]:
    return {w for w in re.findall(r"[A-Za-z0-9]+", text) if len(w) >= shortest}


def test_every_answer_is_readable_at_80_columns(broken_store):
    rename, run = broken_store
    for args in (
        ("dna", "stg_orders"),
        ("blast", "stg_orders"),
        ("blast", "stg_orders", "-c", "status"),
        ("incidents", "all"),
        ("incident", "1"),
        ("incident", str(rename)),
        ("runs",),
        ("timeline", "stg_orders", "--since", "1d"),
        ("why", "stg_orders"),
    ):
        narrow, wide = run(80, *args), run(200, *args)
        assert max(len(line) for line in narrow.splitlines()) <= 80, args
        assert max(len(line) for line in wide.splitlines()) > 80 or len(narrow.splitlines()) == len(wide.splitlines())
        # a name folded inside a word ("warehouse.shop.analy" / "tics.orders") leaves pieces no wide line has
        assert words(narrow, 3) - words(wide) == set(), args

    blast = json.loads(run(80, "blast", "stg_orders", "--json"))
    rows = cells(run(80, "blast", "stg_orders"), 1)
    assert ["".join(row) for row in rows] == [e["fqn"] for e in blast["entities"]]
    assert any(len(row) > 1 for row in rows)  # at 80 columns some names do wrap…
    assert all(piece.endswith((".", "_")) for row in rows for piece in row[:-1])  # …only after a dot or an _


def cells(table: str, index: int) -> list[list[str]]:
    """The pieces of column `index` of each row of a rich table (a row starts where the first cell is not empty)."""
    rows: list[list[str]] = []
    for line in table.splitlines():
        if not line.startswith("│"):
            continue
        parts = [p.strip() for p in line.split("│")[1:-1]]
        if parts[0]:
            rows.append([])
        if parts[index]:
            rows[-1].append(parts[index])
    return rows


def test_slack_markup_is_plain_terminal_text_in_incident_and_why(broken_store):
    rename, run = broken_store
    raw = json.loads(run(80, "incident", str(rename), "--json"))["incident"]["details"]["explanation"]
    assert "*What changed*" in raw["technical"] and "`" in raw["technical"]  # Slack mrkdwn in the store
    for args in (("incident", str(rename)), ("incident", "1"), ("why", "stg_orders")):
        out = run(80, *args)
        assert "<http" not in out and "|" not in out and "`" not in out, args
        assert not re.search(r"(?<![\w*])\*\w[^*\n]*\*(?![\w*])", out), args
        assert not re.search(r"(?<![\w:/]):[a-z_]+:(?![\w:])", out), args
        assert not re.search(r"&(lt|gt|amp);", out), args
    assert "What changed" in run(80, "incident", str(rename))


def test_mrkdwn_becomes_styled_plain_text():
    text = mrkdwn("*What changed* in `stg_orders`: see <https://ci.example/run/7|the run> :warning: &lt;b&gt; :mag:")
    assert text.plain == "What changed in stg_orders: see the run (https://ci.example/run/7) ⚠ <b> "
    assert [(text.plain[s.start : s.end], s.style) for s in text.spans] == [
        ("What changed", "bold"),
        ("stg_orders", "cyan"),
    ]
    assert mrkdwn("[bold]not markup[/] *a _b_ c*").plain == "[bold]not markup[/] a _b_ c"


@pytest.mark.parametrize(
    ("width", "lines"),
    [
        (80, ["warehouse.shop.analytics.revenue_daily"]),
        (30, ["warehouse.shop.analytics.", "revenue_daily"]),
        (12, ["warehouse.", "shop.", "analytics.", "revenue_", "daily"]),
        (6, ["wareh…", "shop.", "analy…", "reven…", "daily"]),
    ],
)
def test_a_name_wraps_after_dots_then_underscores_never_inside_a_word(width, lines):
    from rich.console import Console

    console = Console(width=width, record=True)
    console.print(Name("warehouse.shop.analytics.revenue_daily"))
    assert console.export_text().splitlines() == lines
