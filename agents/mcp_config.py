"""MCP server configuration: the `mcpServers` JSON file with `${VAR}` expansion, or the installed Tavily/BrightData."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from agents.config import AgentConfig
from storage.redact import mask_secrets

# Pinned in agents/mcp_servers/package.json (+ package-lock.json) and installed ahead of time with `make mcp`:
# `npx -y` at run time downloads on the first start (longer than a start-up timeout) and needs the registry.
TAVILY_PACKAGE = "tavily-mcp@0.2.22"
BRIGHTDATA_PACKAGE = "@brightdata/mcp@2.11.3"
SERVERS_DIR = Path(__file__).resolve().parent / "mcp_servers"
INSTALL_HINT = "run make mcp (npm ci --prefix agents/mcp_servers), or set DNABOT_MCP_SERVERS_DIR to where they are"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STDIO_KEYS = frozenset({"command", "args", "env", "cwd", "type", "transport", "disabled", "description"})
_HTTP_KEYS = frozenset({"url", "headers", "type", "transport", "disabled", "description"})
_HTTP_TYPES = frozenset({"http", "streamable-http", "streamable_http", "streamableHttp"})
_Fail = Callable[[str], "MCPConfigError"]


class MCPConfigError(ValueError):
    """The MCP configuration file is missing, unreadable or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class MCPOptions:
    """How the MCP servers are run (from the bot's settings): where they are installed, their start-up timeout,
    the outside-context budgets, and the environment passed to every stdio server (proxy, CA bundle, …)."""

    servers_dir: str | None = None
    start_timeout_seconds: float = 30.0
    sync_budget_seconds: float = 60.0
    question_budget_seconds: float = 4.0
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ServerSpec:
    """One MCP server to connect to: a stdio command or a streamable HTTP URL (secrets are kept out of repr).

    `problem` says why it cannot start at all (e.g. not installed): it is then never launched, only reported."""

    name: str
    transport: Literal["stdio", "http"]
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    problem: str | None = None

    def redact(self, text: str) -> str:
        """`text` with this server's secrets (env and header values, URL query values) replaced by `***`."""
        secrets = [*self.env.values(), *self.headers.values()]
        secrets += [value.split(" ", 1)[-1] for value in self.headers.values()]  # "Bearer <token>"
        if self.url:
            secrets += [value for _, value in parse_qsl(urlsplit(self.url).query)]
        return mask_secrets(text, secrets, shortest=4)


def load_servers(config: AgentConfig, env: Mapping[str, str], options: MCPOptions | None = None) -> list[ServerSpec]:
    """The servers to use: from `config.mcp_config_path` when set, else the defaults for the keys that are set."""
    if config.mcp_config_path:
        return parse_config_file(Path(config.mcp_config_path), env)
    return default_servers(config, options)


def default_servers(config: AgentConfig, options: MCPOptions | None = None) -> list[ServerSpec]:
    """Tavily when `tavily_api_key` is set and BrightData when `brightdata_api_token` is set; none without keys.

    Both run with `node` from the installed packages (never `npx`), in the install folder (tavily-mcp loads a
    `.env` from its working directory: not the bot's). A package that is not installed gives a spec whose
    `problem` says to run `make mcp`."""
    root = Path(options.servers_dir) if options and options.servers_dir else SERVERS_DIR
    servers: list[ServerSpec] = []
    if config.tavily_api_key:
        servers.append(_installed("tavily", root, "tavily-mcp", {"TAVILY_API_KEY": config.tavily_api_key}))
    if config.brightdata_api_token:
        # BASE_TIMEOUT (seconds) bounds each of its API requests; axios has none by default.
        timeout = str(max(1, round(config.mcp_call_timeout_seconds)))
        env = {"API_TOKEN": config.brightdata_api_token, "BASE_TIMEOUT": timeout}
        servers.append(_installed("brightdata", root, "@brightdata/mcp", env))
    return servers


def installed_bin(root: Path, package: str) -> Path:
    """The entry script of an installed npm `package` under `root/node_modules` (from its package.json `bin`);
    raises `MCPConfigError` saying how to install it when it is missing."""
    manifest = root / "node_modules" / package / "package.json"
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MCPConfigError(f"MCP server {package} is not installed in {root}: {INSTALL_HINT}") from exc
    entry = document.get("bin")
    if isinstance(entry, dict):
        entry = entry.get(package) or next(iter(entry.values()), None)
    script = (manifest.parent / entry).resolve() if isinstance(entry, str) else None
    if script is None or not script.is_file():
        raise MCPConfigError(f"MCP server {package} in {root} has no entry script: {INSTALL_HINT}")
    return script


def _installed(name: str, root: Path, package: str, env: dict[str, str]) -> ServerSpec:
    try:
        script = installed_bin(root, package)
        if shutil.which("node") is None:
            raise MCPConfigError(f"node is not on PATH: install Node 20+ for MCP server {package}, then {INSTALL_HINT}")
    except MCPConfigError as exc:
        return ServerSpec(name=name, transport="stdio", command="node", env=env, problem=str(exc))
    return ServerSpec(name=name, transport="stdio", command="node", args=(str(script),), env=env, cwd=str(root))


def parse_config_file(path: Path, env: Mapping[str, str]) -> list[ServerSpec]:
    """Read and validate an `mcpServers` JSON file; raise `MCPConfigError` naming the file on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MCPConfigError(f"MCP config {path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MCPConfigError(
            f"MCP config {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return parse_config(document, env, source=str(path))


def parse_config(document: Any, env: Mapping[str, str], *, source: str = "<config>") -> list[ServerSpec]:
    """Validate a parsed `{"mcpServers": {...}}` document, expanding `${VAR}` and `${VAR:-default}` from `env`."""

    def fail(problem: str) -> MCPConfigError:
        return MCPConfigError(f"MCP config {source}: {problem}")

    if not isinstance(document, dict) or not isinstance(document.get("mcpServers"), dict):
        raise fail('expected a JSON object with an "mcpServers" object')
    servers: list[ServerSpec] = []
    for name, entry in document["mcpServers"].items():
        if not isinstance(entry, dict):
            raise fail(f"server {name!r} must be an object")
        if entry.get("disabled") is True:
            continue
        where = f"server {name!r}"
        servers.append(_parse_entry(name, entry, env, where, fail))
    return servers


def _parse_entry(name: str, entry: dict[str, Any], env: Mapping[str, str], where: str, fail: _Fail) -> ServerSpec:
    kind = entry.get("type", entry.get("transport"))
    if "command" in entry and "url" in entry:
        raise fail(f'{where} has both "command" and "url"; use one')
    if "url" in entry:
        if kind is not None and kind not in _HTTP_TYPES:
            raise fail(f"{where}: transport {kind!r} is not supported (only stdio and streamable HTTP)")
        _check_keys(entry, _HTTP_KEYS, where, fail)
        url = _expand(_string(entry["url"], f"{where} url", fail), env, f"{where} url", fail)
        if not url.startswith(("http://", "https://")):
            raise fail(f"{where}: url must start with http:// or https://")
        headers = _string_map(entry.get("headers", {}), env, f"{where} headers", fail)
        return ServerSpec(name=name, transport="http", url=url, headers=headers)
    if "command" in entry:
        if kind is not None and kind != "stdio":
            raise fail(f"{where}: a command server must have type 'stdio', not {kind!r}")
        _check_keys(entry, _STDIO_KEYS, where, fail)
        command = _expand(_string(entry["command"], f"{where} command", fail), env, f"{where} command", fail)
        if not command.strip():
            raise fail(f"{where}: command is empty")
        raw_args = entry.get("args", [])
        if not isinstance(raw_args, list) or not all(isinstance(a, str) for a in raw_args):
            raise fail(f"{where}: args must be a list of strings")
        args = tuple(_expand(a, env, f"{where} args", fail) for a in raw_args)
        cwd = entry.get("cwd")
        if cwd is not None:
            cwd = _expand(_string(cwd, f"{where} cwd", fail), env, f"{where} cwd", fail)
        child_env = _string_map(entry.get("env", {}), env, f"{where} env", fail)
        return ServerSpec(name=name, transport="stdio", command=command, args=args, env=child_env, cwd=cwd)
    raise fail(f'{where} needs "command" (stdio) or "url" (streamable HTTP)')


def _check_keys(entry: dict[str, Any], allowed: frozenset[str], where: str, fail: _Fail) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise fail(f"{where}: unknown key(s) {', '.join(unknown)}")


def _string(value: Any, what: str, fail: _Fail) -> str:
    if not isinstance(value, str):
        raise fail(f"{what} must be a string")
    return value


def _string_map(value: Any, env: Mapping[str, str], what: str, fail: _Fail) -> dict[str, str]:
    if not isinstance(value, dict):
        raise fail(f"{what} must be an object of strings")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise fail(f"{what}: {key} must be a string")
        result[key] = _expand(item, env, f"{what} {key}", fail)
    return result


def _expand(value: str, env: Mapping[str, str], what: str, fail: _Fail) -> str:
    """Replace `${VAR}` (must be set) and `${VAR:-default}` using `env` only, never the process environment."""

    def substitute(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        found = env.get(variable)
        if found:
            return found
        if default is not None:
            return default
        raise fail(f"{what}: ${{{variable}}} is not set")

    return _VAR.sub(substitute, value)
