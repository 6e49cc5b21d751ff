"""The lineage picture posted in an incident thread: readable, bounded in size, deterministic, robust to odd names."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.blocks.lineage_png import MAX_H, MAX_W, describe_cause, layout, render_lineage_png, short_name

STG = "warehouse.shop.staging.stg_orders"
CAUSE = "status → order_state"


def brk(fqn: str, column: str | None, entity_type: str, distance: int, *via: str) -> dict:
    return {
        "entity_fqn": fqn,
        "column": column,
        "entity_type": entity_type,
        "distance": distance,
        "reason": "missing_column",
        "via": list(via),
    }


DEMO_BREAKS = [
    brk("warehouse.shop.analytics.orders", "status", "table", 1, f"{STG}.status"),
    brk("warehouse.shop.analytics.revenue_daily", "order_status", "table", 1, f"{STG}.status"),
    brk(
        "looker.model.orders",
        "order_status",
        "dashboardDataModel",
        2,
        f"{STG}.status",
        "warehouse.shop.analytics.orders.status",
    ),
    brk("looker.sales_overview", None, "dashboard", 3, STG, "warehouse.shop.analytics.orders", "looker.model.orders"),
    brk("looker.daily_orders", None, "chart", 3),
]


def render(breaks: list[dict], **kw) -> bytes:
    args = {"root_fqn": STG, "root_column": "status", "cause_text": CAUSE, "breaks": breaks, "title": "Incident"}
    return render_lineage_png(**(args | kw))


def lay(breaks: list[dict], **kw):
    args = {"root_fqn": STG, "root_column": "status", "cause_text": CAUSE, "breaks": breaks, "title": "Incident"}
    return layout(**(args | kw))


def open_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_a_renamed_column_draws_as_a_valid_png_within_bounds():
    img = open_png(render(DEMO_BREAKS))
    assert img.format == "PNG"
    assert 300 <= img.width <= MAX_W and 150 <= img.height <= MAX_H
    assert img.getpixel((1, 1)) == (255, 255, 255)  # white background
    assert not img.info.get("tIME") and "Creation Time" not in img.info


def test_the_cause_sits_left_assets_by_hop_and_dashboards_far_right():
    result = lay(DEMO_BREAKS)
    cause = result.node("cause")
    assert cause.kind == "cause" and cause.column == 0
    assert cause.lines == ("staging.stg_orders", ".status", CAUSE)
    by_name = {n.lines[0]: n for n in result.nodes}
    assert by_name["analytics.orders"].lines[1].startswith(".status")
    assert by_name["analytics.orders"].kind == "asset"
    assert by_name["analytics.orders"].column == by_name["analytics.revenue_daily"].column == 1
    assert by_name["model.orders"].column == 2
    assert by_name["looker.sales_overview"].kind == "dashboard"
    assert by_name["looker.daily_orders"].kind == "chart"
    assert by_name["looker.sales_overview"].column == by_name["looker.daily_orders"].column == 3
    assert [h for h, _ in result.headers] == ["Cause", "Hop 1", "Hop 2", "Dashboards & charts"]
    assert result.legend == ("cause", "asset", "dashboard", "chart")


def test_edges_follow_the_via_path_and_fall_back_to_the_previous_hop():
    result = lay(DEMO_BREAKS)
    ids = {n.lines[0]: n.id for n in result.nodes}
    edges = {(e.src, e.dst): e.inferred for e in result.edges}
    assert edges[("cause", ids["analytics.orders"])] is False
    assert edges[("cause", ids["analytics.revenue_daily"])] is False
    assert edges[(ids["analytics.orders"], ids["model.orders"])] is False
    assert edges[(ids["model.orders"], ids["looker.sales_overview"])] is False
    assert edges[(ids["model.orders"], ids["looker.daily_orders"])] is True  # no via: drawn from the previous hop
    assert len(edges) == 5


def test_the_same_incident_gives_the_same_bytes():
    assert render(DEMO_BREAKS) == render([dict(b) for b in DEMO_BREAKS])


def test_two_hundred_breaks_stay_within_bounds_with_more_boxes():
    breaks = [brk(f"warehouse.shop.mart.table_{i:03}", "status", "table", 1, f"{STG}.status") for i in range(150)]
    breaks += [brk(f"looker.chart_{i:03}", None, "chart", 2, f"warehouse.shop.mart.table_{i:03}") for i in range(50)]
    result = lay(breaks)
    assert result.width <= MAX_W and result.height <= MAX_H
    assert all(n.x >= 0 and n.x + n.w <= result.width and n.y >= 0 and n.y + n.h <= result.height for n in result.nodes)
    more = {n.column: n for n in result.nodes if n.kind == "more"}
    assert set(more) == {1, 2}
    for column, total in ((1, 150), (2, 50)):
        shown = [n for n in result.nodes if n.column == column and n.kind != "more"]
        assert more[column].hidden == total - len(shown)
        assert more[column].lines[0] == f"+{more[column].hidden} more"
    img = open_png(render(breaks))
    assert img.size == (result.width, result.height)


def test_max_nodes_caps_each_hop_column():
    breaks = [brk(f"db.s.t{i}", None, "table", 1, STG) for i in range(10)]
    result = lay(breaks, max_nodes=4)
    hop1 = [n for n in result.nodes if n.column == 1]
    assert len(hop1) == 4 and hop1[-1].lines[0] == "+7 more"


def test_many_hops_merge_into_the_last_column_that_fits():
    breaks = [brk(f"db.s.t{d}", None, "table", d, STG) for d in range(1, 9)]
    breaks.append(brk("looker.dash", None, "dashboard", 9))
    result = lay(breaks)
    assert result.width <= MAX_W
    assert result.headers[-2][0] == "Hop 3+" and result.headers[-1][0] == "Dashboards"


def test_no_breaks_gives_a_small_picture_of_the_cause_only():
    result = lay([])
    assert [n.kind for n in result.nodes] == ["cause"]
    assert result.edges == () and result.legend == ("cause",)
    img = open_png(render([]))
    assert img.width <= 700 and img.height <= 300


@pytest.mark.parametrize(
    ("fqn", "column", "shown"),
    [
        ("склад.магазин.продажи.заказы", "статус", "продажи.заказы"),
        ('svc.db.shop."dim.product"', "id", 'shop."dim.product"'),
        ('svc.db."unbalanced', None, 'db."unbalanced'),
    ],
)
def test_odd_names_do_not_crash(fqn, column, shown):
    breaks = [brk(fqn, column, "table", 1, f"{STG}.status"), brk(f"{fqn}_dash", None, "dashboard", 2, fqn)]
    assert short_name(fqn) == shown
    open_png(render(breaks, root_fqn=fqn, root_column=column, title=f"{fqn} — 2 assets"))


def test_long_names_are_shortened_to_the_last_two_parts_with_an_ellipsis():
    name = short_name("warehouse.shop.analytics.orders_enriched_with_customer_lifetime_value")
    assert len(name) == 28 and "…" in name and name.startswith("analytics") and name.endswith("value")
    assert short_name("warehouse.shop.analytics.orders") == "analytics.orders"


def test_the_cause_line_says_what_happened():
    assert describe_cause({"kind": "column_renamed", "subject": "status", "old_value": "status",
                           "new_value": "order_state"}) == CAUSE  # fmt: skip
    assert describe_cause({"kind": "column_removed", "subject": "status"}) == "status removed"
    assert (
        describe_cause({"kind": "column_type_changed", "old_value": {"dataType": "VARCHAR"}, "new_value": "INT"})
        == "type VARCHAR → INT"
    )
    assert describe_cause(None) == "unknown cause"


def test_without_dejavu_the_bundled_font_is_used(monkeypatch):
    from PIL import ImageFont

    from bot.blocks import lineage_png

    real = ImageFont.truetype

    def missing(font, *args, **kwargs):
        if isinstance(font, str) and font.startswith("DejaVu"):
            raise OSError("cannot open resource")
        return real(font, *args, **kwargs)

    monkeypatch.setattr(ImageFont, "truetype", missing)
    lineage_png._font.cache_clear()
    try:
        img = open_png(render(DEMO_BREAKS))
    finally:
        lineage_png._font.cache_clear()
    assert img.width <= MAX_W and img.height <= MAX_H
