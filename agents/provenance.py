"""Tool-call provenance: a web tool is called only with URLs, queries and names derived from trusted text.

One `Provenance` per question records what is trusted: the user's question, identifiers shaped like identifiers
(FQNs, table and column names matching `IDENTIFIER_RE`, fixed words such as kinds and statuses in the bot's own
facts), the keys of our own JSON, the vendor names in `VENDORS` and a fixed vocabulary of search words
(`COMMON_WORDS`); and what is not: every other string of catalog metadata (descriptions, tags, titles, column
names that are not identifier-shaped, owner display names) and everything a web tool returned.

A call is refused when a URL in it is not, after normalisation, a result URL of an earlier search in the same
question (an extract or scrape tool only reads pages a search found: nothing from metadata, nothing invented; a
query may also quote a URL from the question), or when one of its words was seen in this question only in
untrusted text. Words the model brings itself (seen nowhere in the question's texts) pass: nobody planted them,
and they are what makes a useful search query.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agents.mcp_results import parse_web_results
from storage.redact import scrub

IDENTIFIER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_$-]{0,127}(?:\.[A-Za-z0-9_][A-Za-z0-9_$-]{0,127}){0,7}")
URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_WORD_RE = re.compile(r"[^\W_]+")
# Keys whose values are URLs to fetch, and tool names that fetch what they are given.
URL_KEYS = frozenset({"url", "urls", "link", "links", "href", "uri", "page", "pages"})
_FETCH_WORDS = ("extract", "scrape", "crawl", "map", "fetch", "browse", "navigate", "screenshot")
SEARCH_TOOLS = frozenset({"tavily_search", "search_engine", "search_engine_batch"})
MIN_WORD = 3  # shorter words ("a", "of", "v2") carry too little to smuggle anything and are everywhere
MAX_STRINGS = 40
MAX_ARG_CHARS = 2_000
VENDORS = frozenset(
    """snowflake bigquery redshift postgres postgresql mysql mariadb oracle mssql sqlserver databricks spark
    delta iceberg hive trino presto athena glue clickhouse duckdb dbt airflow dagster prefect fivetran airbyte
    stitch kafka confluent looker tableau metabase superset powerbi mode sigma redash openmetadata great
    expectations soda monte carlo aws gcp azure s3 gcs azuresql synapse mongodb dynamodb cassandra couchbase
    elasticsearch opensearch salesforce quicksight domo lightdash qliksense microstrategy pinot druid impala
    vertica teradata saphana db2 singlestore exasol greenplum cockroach kinesis redpanda pulsar nifi matillion
    kafkaconnect datalake sqlite""".split()  # noqa: SIM905 - a word list reads best as text
)
COMMON_WORDS = frozenset(
    """the and for with from into onto over under about after before during without within between not but
    how why what when where which who does did has have had was were are is its this that these those than then
    can could should would will may might new old all any one two more most less known latest recent
    outage outages incident incidents issue issues bug bugs error errors failure failures failing failed fail
    broken break breaks breaking broke change changes changed rename renamed renames renaming column columns
    table tables view views schema schemas type types dataset datasets data pipeline pipelines job jobs task
    tasks run runs delay delayed latency lineage ingestion connector connectors driver version versions upgrade
    upgraded release releases notes note changelog deprecation deprecated deprecate removed remove migration
    migrate guide docs documentation api status page announcement support forum community blog dashboard
    dashboards chart charts report reports query queries model models source sources test tests quality
    freshness stale missing null nulls duplicate duplicates owner owners tier trust score metric metrics
    warehouse database databases service services cloud region""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: a fixed `reason` word (a metric label), and a short sentence for the model."""

    reason: str  # "url_not_from_search" | "untrusted_argument" | "malformed_arguments"
    detail: str
    argument: str = ""

    def message(self, tool: str) -> str:
        return (
            f"refused: {tool[:80]} was not called: {self.detail}. Only fetch URLs that an earlier web search in "
            "this question returned, and build queries from the user's question, never from catalog metadata or "
            "web pages."
        )

    def log_line(self, tool: str) -> str:
        """What the log says: the tool, the reason, and the argument clipped and masked (a URL by its host only:
        its path and query are where a leak would travel)."""
        match = URL_RE.search(self.argument)
        if match:
            parts = urlsplit(_urls(match.group(0))[0])
            argument = f"{parts.scheme}://{parts.hostname or '?'}/…"
        else:
            argument = " ".join(self.argument.split())[:60]
        return scrub(f"why-agent refused {tool[:80]}: {self.detail[:160]}; argument {argument!r}")


def normalise_url(url: str) -> str | None:
    """The URL as compared: scheme and host lower-cased, default port, userinfo and fragment dropped; None if it
    is not an http(s) URL."""
    text = url.strip().rstrip(".,;:!?")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("http", "https") or not host or parts.username or parts.password:
        return None
    default = {"http": 80, "https": 443}[scheme]
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def words(text: str) -> list[str]:
    """The words of `text` as compared: NFKC, case-folded, letters and digits only (`_`, `-`, `.` split words)."""
    return _WORD_RE.findall(unicodedata.normalize("NFKC", text).casefold())


def canonical_tool(name: str) -> str:
    return name.replace("-", "_").casefold()


def is_fetch_tool(name: str) -> bool:
    """A tool that reads the URLs it is given (extract, scrape, crawl…)."""
    return any(word in canonical_tool(name) for word in _FETCH_WORDS)


def is_search_tool(name: str) -> bool:
    """A tool whose result URLs may be fetched afterwards."""
    canonical = canonical_tool(name)
    return canonical in SEARCH_TOOLS or (canonical.endswith("search") and not is_fetch_tool(canonical))


def _strings(value: Any, key: str = "") -> Iterable[tuple[str, str]]:
    """(key, string) for every string inside a JSON value; the key is the nearest enclosing object key."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for k, item in value.items():
            yield from _strings(item, str(k))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, key)


def _enum_values(schema: Mapping[str, Any] | None) -> frozenset[str]:
    """Every `enum`/`const` string in a tool's input schema: choosing one of them is choosing from our own menu."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, item in node.items():
                if key == "enum" and isinstance(item, list):
                    found.update(v for v in item if isinstance(v, str))
                elif key == "const" and isinstance(item, str):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return frozenset(found)


class Provenance:
    """One question's record of trusted and untrusted text and of the URLs its searches returned."""

    def __init__(self) -> None:
        self.trusted_words: set[str] = set(VENDORS) | set(COMMON_WORDS)
        self.trusted_urls: set[str] = set()
        self.untrusted: dict[str, str] = {}  # word -> where it was first seen
        self.untrusted_urls: dict[str, str] = {}  # normalised URL -> where it was first seen
        self.search_urls: set[str] = set()

    # -- recording ------------------------------------------------------------------------------------------------

    def trust_text(self, text: str) -> None:
        """Text the user wrote (the question) or the bot itself produced: every word of it is trusted."""
        self.trusted_words.update(words(text))
        self.trusted_urls.update(u for u in map(normalise_url, _urls(text)) if u is not None)

    def trust_identifier(self, name: str) -> None:
        """An identifier of our own (the resolved FQN): trusted if it is identifier-shaped, else untrusted."""
        if IDENTIFIER_RE.fullmatch(name):
            self.trusted_words.update(words(name))
        else:
            self.observe_untrusted(name, "catalog metadata")

    def observe_facts(self, value: Any, source: str = "catalog metadata") -> None:
        """A JSON value from the DNA store: identifier-shaped strings are trusted, other strings are metadata."""
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.trusted_words.update(words(str(key)))  # our own schema's keys
                self.observe_facts(item, source)
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                self.observe_facts(item, source)
        elif isinstance(value, str):
            if IDENTIFIER_RE.fullmatch(value):
                self.trusted_words.update(words(value))
            else:
                self.observe_untrusted(value, source)

    def observe_untrusted(self, text: str, source: str) -> None:
        """Text someone else wrote (metadata free text, web pages): its words are tainted unless trusted too."""
        for word in words(text):
            self.untrusted.setdefault(word, source)
        for url in map(normalise_url, _urls(text)):
            if url is not None:
                self.untrusted_urls.setdefault(url, source)

    def observe_result(self, tool: str, text: str, urls: Iterable[str] = ()) -> None:
        """A web tool's answer: its text is untrusted; a search's result URLs may be fetched later."""
        self.observe_untrusted(text, f"web result of {tool[:40]}")
        if not is_search_tool(tool):
            return
        found = [hit.url for hit in parse_web_results(text, tool)] or list(urls)
        for url in found:
            normal = normalise_url(url)
            if normal is not None:
                self.search_urls.add(normal)

    # -- checking -------------------------------------------------------------------------------------------------

    def check(self, tool: str, args: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> Refusal | None:
        """None when every argument of this call is derivable from trusted text, else the first reason not."""
        strings = list(_strings(args))
        if len(strings) > MAX_STRINGS or any(len(s) > MAX_ARG_CHARS for _, s in strings):
            return Refusal("malformed_arguments", "the arguments are too large")
        known = (schema or {}).get("properties")
        if isinstance(known, Mapping) and known and any(key not in known for key in args):
            return Refusal("malformed_arguments", "an argument is not in the tool's schema")
        menu = _enum_values(schema)
        fetch = is_fetch_tool(tool)
        for key, value in strings:
            if value in menu:
                continue
            if key.casefold() in URL_KEYS or (fetch and normalise_url(value) is not None):
                refusal = self._check_url(value)
            else:
                refusal = self._check_urls_inside(value) or self._check_words(value)
            if refusal is not None:
                return refusal
        return None

    def _check_url(self, value: str, *, fetch: bool = True) -> Refusal | None:
        normal = normalise_url(value)
        if normal is not None and (normal in self.search_urls or (not fetch and normal in self.trusted_urls)):
            return None
        where = self.untrusted_urls.get(normal or "")
        came = f" (it appears in {where})" if where else ""
        return Refusal("url_not_from_search", f"the URL is not a result of an earlier web search{came}", value)

    def _check_urls_inside(self, value: str) -> Refusal | None:
        for url in _urls(value):
            refusal = self._check_url(url, fetch=False)
            if refusal is not None:
                return Refusal(refusal.reason, refusal.detail, value)
        return None

    def _check_words(self, value: str) -> Refusal | None:
        for word in words(URL_RE.sub(" ", value)):
            if len(word) >= MIN_WORD and word in self.untrusted and word not in self.trusted_words:
                detail = f"the word {word[:40]!r} comes only from {self.untrusted[word]}"
                return Refusal("untrusted_argument", detail, value)
        return None


def _urls(text: str) -> list[str]:
    return [m if "://" in m else "https://" + m for m in URL_RE.findall(text)]
