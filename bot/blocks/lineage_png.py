"""A PNG picture of an incident's affected lineage: the cause on the left, broken assets by hop, dashboards right."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from storage.openmetadata import fqn as fqns

MAX_W, MAX_H = 1600, 1000
MARGIN, TOP, LEGEND_H = 24, 96, 44
BOX_W, BOX_H, CAUSE_H, ROW_GAP, COL_GAP = 260, 46, 66, 10, 48
MAX_COLUMNS = (MAX_W - 2 * MARGIN + COL_GAP) // (BOX_W + COL_GAP)  # cause + hops + dashboards/charts
MAX_ROWS = (MAX_H - TOP - LEGEND_H - MARGIN + ROW_GAP) // (BOX_H + ROW_GAP)
NAME_CHARS = 28

SINK_TYPES = {"dashboard": "dashboard", "chart": "chart"}
# kind: (fill, outline, legend label)
STYLES = {
    "cause": ("#FDE7E7", "#D93025", "Cause"),
    "asset": ("#FFF3DC", "#E37400", "Table / data model"),
    "dashboard": ("#F3E5F5", "#8E24AA", "Dashboard"),
    "chart": ("#E3EEFD", "#1A73E8", "Chart"),
    "more": ("#F1F3F4", "#9AA0A6", "Hidden (+N more)"),
}
TEXT, MUTED, EDGE, INFERRED = "#202124", "#5F6368", "#5F6368", "#B0B4B9"
TYPE_LABELS = {"table": "table", "dashboardDataModel": "data model", "dashboard": "dashboard", "chart": "chart"}


@dataclass(frozen=True)
class Node:
    """One box: the cause, a broken asset (or column), or a "+N more" stand-in for hidden ones."""

    id: str
    kind: str  # cause | asset | dashboard | chart | more
    lines: tuple[str, ...]
    column: int
    x: int
    y: int
    w: int
    h: int
    hidden: int = 0


@dataclass(frozen=True)
class Edge:
    """An arrow between two boxes; inferred when the break had no usable `via` path."""

    src: str
    dst: str
    inferred: bool = False


@dataclass(frozen=True)
class Layout:
    """Where everything goes, in pixels; independent of fonts so it can be tested without looking at pixels."""

    width: int
    height: int
    title: str
    headers: tuple[tuple[str, int], ...]  # (label, x centre)
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    legend: tuple[str, ...]  # node kinds present, in legend order

    def node(self, node_id: str) -> Node:
        """The node with this id."""
        return next(n for n in self.nodes if n.id == node_id)


# ------------------------------------------------------------------------------------------------ names


def _parts(name: str) -> list[str]:
    try:
        return [fqns.quote_name(p) if '"' not in p else p for p in fqns.split(name)]
    except fqns.FQNError:
        return name.split(".")


def ellipsize(text: str, limit: int = NAME_CHARS) -> str:
    """Shorten text past `limit` characters, keeping its head and its more telling tail."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def short_name(name: str) -> str:
    """The last two FQN parts, ellipsized: `warehouse.shop.analytics.orders` → `analytics.orders`."""
    return ellipsize(".".join(_parts(name)[-2:]))


def describe_cause(cause: Mapping[str, Any] | None) -> str:
    """A short line for the cause box from an incident's `details["cause"]`, e.g. "status → order_state"."""
    if not cause:
        return "unknown cause"
    kind, subject = str(cause.get("kind") or "change"), cause.get("subject")
    old, new = _value(cause.get("old_value")), _value(cause.get("new_value"))
    if kind == "column_renamed":
        return f"{old or subject} → {new}"
    if kind == "column_removed":
        return f"{subject or old} removed"
    if kind == "column_type_changed":
        return f"type {old} → {new}"
    label = kind.replace("_", " ")
    return f"{label}: {old} → {new}" if old is not None or new is not None else label


def _value(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("dataTypeDisplay") or value.get("dataType") or value.get("name")
    return None if value is None else str(value)


# ------------------------------------------------------------------------------------------------ layout


Key = tuple[str, str | None]  # (entity FQN, column)


def _kind(entity_type: str | None) -> str:
    return SINK_TYPES.get(entity_type or "", "asset")


def _key(b: Mapping[str, Any]) -> Key:
    return str(b.get("entity_fqn") or "?"), (str(b["column"]) if b.get("column") else None)


def _lookup_names(entity: str, column: str | None) -> list[str]:
    if not column:
        return [entity]
    return [fqns.column_fqn(entity, column), f"{entity}.{column}", entity]


def _distance(b: Mapping[str, Any]) -> int:
    try:
        return int(b.get("distance") or 1)
    except (TypeError, ValueError):
        return 1


def _columns(breaks: list[dict[str, Any]], root: Key) -> list[list[dict[str, Any]]]:
    """Breaks grouped into hop columns (far hops merged to fit) and a last column of dashboards and charts."""
    seen: set[Key] = {root}
    unique = []
    for b in sorted(breaks, key=_distance):
        if _key(b) not in seen:
            seen.add(_key(b))
            unique.append(b)
    assets = [b for b in unique if _kind(b.get("entity_type")) == "asset"]
    sinks = [b for b in unique if _kind(b.get("entity_type")) != "asset"]
    hops = sorted({_distance(b) for b in assets})[: MAX_COLUMNS - 1 - (1 if sinks else 0)]
    cols: list[list[dict[str, Any]]] = [[] for _ in hops]
    for b in assets:
        cols[max(i for i, d in enumerate(hops) if d <= _distance(b) or i == 0)].append(b)
    return [*cols, sinks] if sinks else cols


def _header(col: list[dict[str, Any]], merged: bool) -> str:
    kinds = {_kind(b.get("entity_type")) for b in col}
    if kinds <= {"dashboard", "chart"}:
        return "Dashboards & charts" if len(kinds) > 1 else f"{kinds.pop().title()}s"
    low = min(_distance(b) for b in col)
    return f"Hop {low}+" if merged else f"Hop {low}"


def layout(
    *,
    root_fqn: str,
    root_column: str | None,
    cause_text: str,
    breaks: list[dict[str, Any]],
    title: str,
    max_nodes: int = 40,
) -> Layout:
    """Place the cause, the broken assets by hop and the dashboards; cap each column to what fits."""
    root = (root_fqn, root_column or None)
    cause_lines = (
        short_name(root_fqn),
        f".{ellipsize(root_column, NAME_CHARS - 1)}" if root_column else "",
        cause_text,
    )
    cause = Node("cause", "cause", tuple(x for x in cause_lines if x), 0, MARGIN, 0, BOX_W, CAUSE_H)
    owner: dict[Key, str] = {root: "cause"}  # break key → the box that shows it
    names: dict[str, Key] = {n: root for n in _lookup_names(*root)}
    placed: list[list[Node]] = [[cause]]
    pending: list[tuple[dict[str, Any], int]] = []
    cols = _columns(breaks, root)
    hop_count = sum(1 for c in cols if _kind(c[0].get("entity_type")) == "asset")
    headers = [("Cause", MARGIN + BOX_W // 2)]
    cap = max(2, min(max_nodes, MAX_ROWS))
    for ci, col in enumerate(cols, start=1):
        for b in col:
            for name in _lookup_names(*_key(b)):
                names.setdefault(name, _key(b))  # an entity's bare FQN keeps meaning its first (nearest) box
        col.sort(
            key=lambda b: (_pred_y(b, names, owner, placed, ci), b.get("entity_type") != "dashboard", str(_key(b)))
        )
        x = MARGIN + ci * (BOX_W + COL_GAP)
        shown = col if len(col) <= cap else col[: cap - 1]
        nodes = [_asset_node(b, ci, x, f"n{ci}.{i}") for i, b in enumerate(shown)]
        if len(col) > len(shown):
            more = len(col) - len(shown)
            nodes.append(Node(f"more{ci}", "more", (f"+{more} more", "hidden to fit"), ci, x, 0, BOX_W, BOX_H, more))
        for i, b in enumerate(col):
            owner[_key(b)] = nodes[min(i, len(nodes) - 1)].id
            pending.append((b, ci))
        merged = ci == hop_count and len({_distance(b) for b in col}) > 1
        headers.append((_header(col, merged), x + BOX_W // 2))
        placed.append(_stack(nodes))
    content_h = max(sum(n.h for n in c) + ROW_GAP * (len(c) - 1) for c in placed)
    nodes = [replace(n, y=n.y + TOP + (content_h - _col_h(c)) // 2) for c in placed for n in c]
    width = max(MARGIN * 2 + len(placed) * BOX_W + (len(placed) - 1) * COL_GAP, 560)
    edges = _edges(pending, names, owner, placed)
    kinds = {n.kind for n in nodes}
    return Layout(
        width=min(width, MAX_W),
        height=min(TOP + content_h + LEGEND_H + MARGIN, MAX_H),
        title=title,
        headers=tuple(headers),
        nodes=tuple(nodes),
        edges=edges,
        legend=tuple(k for k in STYLES if k in kinds),
    )


def _asset_node(b: Mapping[str, Any], ci: int, x: int, node_id: str) -> Node:
    entity, column = _key(b)
    kind = _kind(b.get("entity_type"))
    what = f".{ellipsize(column, NAME_CHARS - 1)}" if column else TYPE_LABELS.get(str(b.get("entity_type")), "asset")
    reason = str(b.get("reason") or "").replace("_", " ")
    return Node(node_id, kind, (short_name(entity), f"{what} · {reason}" if reason else what), ci, x, 0, BOX_W, BOX_H)


def _stack(nodes: list[Node]) -> list[Node]:
    return [replace(n, y=sum(m.h + ROW_GAP for m in nodes[:i])) for i, n in enumerate(nodes)]


def _col_h(col: list[Node]) -> int:
    return sum(n.h for n in col) + ROW_GAP * (len(col) - 1)


def _predecessor(
    b: Mapping[str, Any], names: dict[str, Key], owner: dict[Key, str], column_of: dict[str, int], ci: int
) -> str | None:
    """The box of the last step of the break's `via` path that is drawn in an earlier column, if any."""
    for step in reversed(list(b.get("via") or ())):
        box = owner.get(names.get(str(step), ("", None)))
        if box is not None and column_of[box] < ci:
            return box
    return None


def _pred_y(
    b: Mapping[str, Any], names: dict[str, Key], owner: dict[Key, str], placed: list[list[Node]], ci: int
) -> float:
    """Where the predecessor sits relative to its column's centre (columns are centred later)."""
    column_of = {n.id: n.column for c in placed for n in c}
    box = _predecessor(b, names, owner, column_of, ci)
    for n in placed[column_of[box]] if box else ():
        if n.id == box:
            return n.y + n.h / 2 - _col_h(placed[n.column]) / 2
    return float("inf")


def _edges(
    pending: list[tuple[dict[str, Any], int]], names: dict[str, Key], owner: dict[Key, str], placed: list[list[Node]]
) -> tuple[Edge, ...]:
    column_of = {n.id: n.column for c in placed for n in c}
    edges: dict[tuple[str, str], bool] = {}  # (src, dst) → inferred
    for b, ci in pending:
        src = _predecessor(b, names, owner, column_of, ci)
        inferred = src is None
        src = src or placed[ci - 1][0].id  # the previous hop, when the path does not say
        key = (src, owner[_key(b)])
        edges[key] = edges.get(key, True) and inferred
    return tuple(Edge(src, dst, inferred) for (src, dst), inferred in edges.items())


# ------------------------------------------------------------------------------------------------ drawing


SS = 2  # drawn at twice the size, then scaled down: smooth curves, arrowheads and rounded corners


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when installed (wide Unicode coverage), else Pillow's bundled font; `size` in final pixels."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size * SS)
    except OSError:
        return ImageFont.load_default(size=size * SS)


def _fit(text: str, font: Any, width: float, middle: bool = False) -> str:
    """Cut text with an ellipsis (at its end, or in its middle for names) to at most `width` drawn pixels."""
    for n in range(len(text), 0, -1):
        cut = text if n == len(text) else ellipsize(text, n) if middle else text[: n - 1] + "…"
        if font.getlength(cut) <= width:
            return cut
    return "…"


def _bezier(a: tuple[float, float], b: tuple[float, float], steps: int = 32) -> list[tuple[float, float]]:
    """A cubic curve leaving `a` and reaching `b` horizontally."""
    mid, pts = (a[0] + b[0]) / 2, []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        x = u**3 * a[0] + 3 * u * u * t * mid + 3 * u * t * t * mid + t**3 * b[0]
        y = (u**3 + 3 * u * u * t) * a[1] + (3 * u * t * t + t**3) * b[1]
        pts.append((round(x, 2), round(y, 2)))
    return pts


def _route(lay: Layout, src: Node, dst: Node, end: tuple[float, float]) -> list[tuple[float, float]]:
    """The edge's points; one that skips columns runs above or below them, not through their boxes."""
    start = ((src.x + src.w) * SS, (src.y + src.h / 2) * SS)
    between = [n for n in lay.nodes if src.column < n.column < dst.column]
    direct = _bezier(start, end)
    if not any(_inside(p, n) for p in direct for n in between):
        return direct
    lanes = (min(n.y for n in between) - ROW_GAP / 2, max(n.y + n.h for n in between) + ROW_GAP / 2)
    lane = min(lanes, key=lambda y: abs(y * SS - start[1]) + abs(y * SS - end[1])) * SS
    x1, x2 = start[0] + COL_GAP / 2 * SS, (dst.x - COL_GAP / 2) * SS
    straight = [(round(x1 + (x2 - x1) * i / 32, 2), lane) for i in range(1, 32)]
    return _bezier(start, (x1, lane)) + straight + _bezier((x2, lane), end)


def _inside(p: tuple[float, float], n: Node, pad: int = 4) -> bool:
    return (n.x - pad) * SS <= p[0] <= (n.x + n.w + pad) * SS and (n.y - pad) * SS <= p[1] <= (n.y + n.h + pad) * SS


def _draw_edge(pen: ImageDraw.ImageDraw, lay: Layout, src: Node, dst: Node, inferred: bool) -> None:
    tip = ((dst.x - 1) * SS, (dst.y + dst.h / 2) * SS)
    back = tip[0] - 9 * SS
    pts = _route(lay, src, dst, (back, tip[1]))
    color = INFERRED if inferred else EDGE
    if inferred:
        for i in range(0, len(pts) - 1, 2):
            pen.line(pts[i : i + 2], fill=color, width=2 * SS)
    else:
        pen.line(pts, fill=color, width=2 * SS, joint="curve")
    pen.polygon([tip, (back, tip[1] - 5 * SS), (back, tip[1] + 5 * SS)], fill=color)


def _draw_node(pen: ImageDraw.ImageDraw, n: Node) -> None:
    fill, outline, _ = STYLES[n.kind]
    x, y, w, h = (v * SS for v in (n.x, n.y, n.w, n.h))
    pen.rounded_rectangle((x, y, x + w, y + h), radius=7 * SS, fill=fill, outline=outline, width=2 * SS)
    fonts = [_font(13, bold=True), _font(12), _font(12, bold=True)]
    colors = [TEXT, MUTED, outline if n.kind == "cause" else MUTED]
    for i, line in enumerate(n.lines[:3]):
        text = _fit(line, fonts[i], w - 20 * SS, middle=i == 0)
        pen.text((x + 10 * SS, y + (8 + 18 * i) * SS), text, font=fonts[i], fill=colors[i], anchor="la")


def _draw_legend(pen: ImageDraw.ImageDraw, lay: Layout) -> None:
    x, y, font = MARGIN * SS, (lay.height - MARGIN - 14) * SS, _font(12)
    mid = y + 7 * SS
    for kind in lay.legend:
        fill, outline, label = STYLES[kind]
        pen.rounded_rectangle((x, y, x + 14 * SS, y + 14 * SS), radius=3 * SS, fill=fill, outline=outline, width=2 * SS)
        pen.text((x + 20 * SS, mid), label, font=font, fill=TEXT, anchor="lm")
        x += 42 * SS + int(font.getlength(label))
    inferred = any(e.inferred for e in lay.edges)
    for label, color, show in (("lineage", EDGE, bool(lay.edges)), ("inferred link", INFERRED, inferred)):
        if show:
            for sx in range(x, x + 24 * SS, (6 if color == INFERRED else 24) * SS):
                end = min(sx + (3 if color == INFERRED else 24) * SS, x + 24 * SS)
                pen.line((sx, mid, end, mid), fill=color, width=2 * SS)
            pen.text((x + 30 * SS, mid), label, font=font, fill=TEXT, anchor="lm")
            x += 52 * SS + int(font.getlength(label))


def draw(lay: Layout) -> Image.Image:
    """Paint a layout onto a white RGB image of exactly `lay.width` × `lay.height` pixels."""
    img = Image.new("RGB", (lay.width * SS, lay.height * SS), "white")
    pen = ImageDraw.Draw(img)
    big, small = _font(18, bold=True), _font(11, bold=True)
    title = _fit(lay.title, big, (lay.width - 2 * MARGIN) * SS)
    pen.text((MARGIN * SS, MARGIN * SS), title, font=big, fill=TEXT, anchor="la")
    for label, cx in lay.headers:
        pen.text((cx * SS, 66 * SS), _fit(label.upper(), small, BOX_W * SS), font=small, fill=MUTED, anchor="ma")
    by_id = {n.id: n for n in lay.nodes}
    for e in sorted(lay.edges, key=lambda e: not e.inferred):  # solid edges over inferred ones
        _draw_edge(pen, lay, by_id[e.src], by_id[e.dst], e.inferred)
    for n in lay.nodes:
        _draw_node(pen, n)
    _draw_legend(pen, lay)
    return img.resize((lay.width, lay.height), Image.Resampling.LANCZOS)


def render_lineage_png(
    *,
    root_fqn: str,
    root_column: str | None,
    cause_text: str,
    breaks: list[dict[str, Any]],
    title: str,
    max_nodes: int = 40,
) -> bytes:
    """PNG bytes of the incident's affected lineage (at most 1600×1000, deterministic, no metadata)."""
    lay = layout(
        root_fqn=root_fqn, root_column=root_column, cause_text=cause_text, breaks=breaks, title=title,
        max_nodes=max_nodes,
    )  # fmt: skip
    buf = io.BytesIO()
    draw(lay).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def incident_png(incident: Any) -> bytes:
    """The lineage picture of an incident: cause → broken columns → dashboards."""
    details = incident.details or {}
    return render_lineage_png(
        root_fqn=incident.root_fqn,
        root_column=incident.root_column,
        cause_text=describe_cause(details.get("cause")),
        breaks=list(details.get("breaks") or []),
        title=incident.title,
    )
