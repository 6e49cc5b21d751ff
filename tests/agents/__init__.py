"""The demo warehouse by hand for agent stories: lineage edges, genes and change rows (no database)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.domain.dna import Edge
from storage.domain.lineage import LineageGraph
from storage.persistence.store import ChangeView

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

KAFKA = "kafka.order_events"
RAW_ORDERS = "warehouse.shop.raw.orders"
STG_ORDERS = "warehouse.shop.staging.stg_orders"
STG_PAYMENTS = "warehouse.shop.staging.stg_payments"
ORDERS = "warehouse.shop.analytics.orders"
REVENUE = "warehouse.shop.analytics.revenue_daily"
MODEL = "looker.model.orders"
MODEL_REVENUE = "looker.model.revenue"
SALES = "looker.sales_overview"
HEALTH = "looker.customer_health"
FINANCE = "looker.finance_daily"
SHOP_STAGING = "airflow.shop_staging"
SHOP_MARTS = "airflow.shop_marts"

TYPES = {
    KAFKA: "topic",
    MODEL: "dashboardDataModel",
    MODEL_REVENUE: "dashboardDataModel",
    SALES: "dashboard",
    HEALTH: "dashboard",
    FINANCE: "dashboard",
}
CONTAINS = {
    SALES: ["looker.orders_by_status", "looker.daily_orders"],
    HEALTH: ["looker.repeat_customers", "looker.returns_rate"],
    FINANCE: ["looker.revenue_by_day", "looker.revenue_mtd"],
}

COLUMNS: dict[str, list[tuple[str, str, int | None]]] = {
    RAW_ORDERS: [("order_id", "NUMBER", None), ("status", "VARCHAR", 32), ("amount", "DECIMAL", None)],
    STG_ORDERS: [
        ("order_id", "NUMBER", None),
        ("customer_id", "NUMBER", None),
        ("status", "VARCHAR", 32),
        ("amount_usd", "DECIMAL", None),
        ("ordered_at", "TIMESTAMP", None),
    ],
    STG_PAYMENTS: [("order_id", "NUMBER", None), ("amount_usd", "DECIMAL", None)],
    ORDERS: [
        ("order_id", "NUMBER", None),
        ("status", "VARCHAR", 32),
        ("amount_usd", "DECIMAL", None),
        ("paid_amount_usd", "DECIMAL", None),
        ("ordered_at", "TIMESTAMP", None),
    ],
    REVENUE: [("day", "DATE", None), ("order_status", "VARCHAR", 32), ("revenue_usd", "DECIMAL", None)],
    MODEL: [("order_id", "NUMBER", None), ("order_status", "VARCHAR", 32), ("revenue_usd", "DECIMAL", None)],
    MODEL_REVENUE: [("day", "DATE", None), ("revenue_usd", "DECIMAL", None)],
}
OWNERS = {
    RAW_ORDERS: ["data-platform"],
    STG_ORDERS: ["ben"],
    STG_PAYMENTS: ["ben"],
    ORDERS: ["ana"],
    REVENUE: ["chloe"],
    MODEL: ["chloe"],
    SALES: ["chloe"],
    HEALTH: ["chloe"],
}
TIERS = {RAW_ORDERS: "Tier.Tier3", STG_ORDERS: "Tier.Tier2", ORDERS: "Tier.Tier1", REVENUE: "Tier.Tier1"}
SERVICE_TYPES = {"warehouse": "Snowflake", "looker": "Looker", "airflow": "Airflow", "kafka": "Kafka"}


def edge(src: str, dst: str, pipeline: str | None = None, **mappings: str | list[str]) -> Edge:
    """An edge with column mappings given as `to_column=from_column(s)`."""
    columns = []
    for to, froms in mappings.items():
        froms = [froms] if isinstance(froms, str) else froms
        columns.append({"from": [f"{src}.{f}" for f in froms], "to": f"{dst}.{to}"})
    return Edge(src, TYPES.get(src, "table"), dst, TYPES.get(dst, "table"), pipeline, columns)


def demo_edges() -> list[Edge]:
    """The demo catalog's order lineage: kafka → raw → staging → analytics → Looker models → dashboards."""
    return [
        edge(KAFKA, RAW_ORDERS, "airflow.shop_ingest", order_id="order_id", status="status", amount="amount"),
        edge(RAW_ORDERS, STG_ORDERS, SHOP_STAGING, order_id="order_id", status="status", amount_usd="amount"),
        edge(
            STG_ORDERS,
            ORDERS,
            SHOP_MARTS,
            order_id="order_id",
            status="status",
            amount_usd="amount_usd",
            ordered_at="ordered_at",
        ),
        edge(STG_PAYMENTS, ORDERS, SHOP_MARTS, paid_amount_usd="amount_usd"),
        edge(STG_ORDERS, REVENUE, SHOP_MARTS, day="ordered_at", order_status="status"),
        edge(STG_PAYMENTS, REVENUE, SHOP_MARTS, revenue_usd="amount_usd"),
        edge(ORDERS, MODEL, order_id="order_id", order_status="status", revenue_usd="amount_usd"),
        edge(REVENUE, MODEL_REVENUE, day="day", revenue_usd="revenue_usd"),
        edge(MODEL, SALES),
        edge(MODEL, HEALTH),
        edge(MODEL_REVENUE, FINANCE),
    ]


def demo_graph(edges: Iterable[Edge] | None = None) -> LineageGraph:
    """The demo lineage as a graph (optionally other edges over the same entities)."""
    return LineageGraph.build(demo_edges() if edges is None else edges, TYPES, CONTAINS)


def column(name: str, type_: str, length: int | None = None, position: int = 1) -> dict[str, Any]:
    """Column genes."""
    display = f"{type_.lower()}({length})" if length else type_.lower()
    return {
        "name": name,
        "type": type_,
        "type_display": display,
        "length": length,
        "precision": None,
        "scale": None,
        "constraint": None,
        "nullable": True,
        "position": position,
        "description": None,
        "tags": [],
        "children": [],
    }


def genes(
    fqn: str,
    *,
    columns: Iterable[tuple[str, str, int | None]] | None = None,
    owners: Iterable[str] | None = None,
    tier: str | None = None,
    usage: Mapping[str, Any] | None = None,
    tests: Iterable[Mapping[str, Any]] = (),
    runs: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Full genes of one demo entity (the documented format), defaults from the demo catalog."""
    cols = COLUMNS.get(fqn, []) if columns is None else list(columns)
    owner_names = OWNERS.get(fqn, []) if owners is None else list(owners)
    tier = TIERS.get(fqn) if tier is None else (tier or None)
    return {
        "entity": {
            "fqn": fqn,
            "type": TYPES.get(fqn, "table"),
            "id": f"id-{fqn}",
            "name": fqn.rsplit(".", 1)[-1],
            "display_name": None,
            "service": fqn.split(".")[0],
            "service_type": SERVICE_TYPES.get(fqn.split(".")[0]),
            "subtype": None,
            "deleted": False,
        },
        "schema": {"columns": [column(n, t, ln, i) for i, (n, t, ln) in enumerate(cols, 1)], "constraints": []},
        "lineage": {"upstream": [], "downstream": []},
        "usage": dict(usage) if usage is not None else {"daily": 10, "weekly": 60, "monthly": 250, "percentile": 50.0},
        "ownership": {
            "owners": [{"name": o, "type": "user", "display_name": None} for o in owner_names],
            "description": "demo",
            "tier": tier,
            "tags": [tier] if tier else [],
            "domains": [],
            "followers": 0,
        },
        "quality": {"tests": [dict(t) for t in tests]},
        "pipeline": {"runs": [dict(r) for r in runs]},
        "contains": {"charts": [], "data_models": [], "dashboards": []},
    }


@dataclass
class Catalog:
    """Current genes by FQN, editable per story step; callable as `genes_of`."""

    overrides: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def __call__(self, fqn: str) -> dict[str, Any] | None:
        if fqn in self.overrides:
            return copy.deepcopy(self.overrides[fqn])
        return genes(fqn)

    def set(self, fqn: str, **kwargs: Any) -> Catalog:
        self.overrides[fqn] = genes(fqn, **kwargs)
        return self


def renamed_stg_columns() -> list[tuple[str, str, int | None]]:
    """stg_orders' columns after status became order_state."""
    return [("order_state" if n == "status" else n, t, ln) for n, t, ln in COLUMNS[STG_ORDERS]]


def change(
    id: int,
    kind: str,
    entity: str,
    subject: str | None,
    old: Any = None,
    new: Any = None,
    *,
    details: Mapping[str, Any] | None = None,
    confidence: float | None = None,
    at: datetime = T0,
    run: int = 2,
) -> ChangeView:
    """A change row as the store hands it over."""
    return ChangeView(
        id=id,
        sync_run_id=run,
        entity_fqn=entity,
        entity_type=TYPES.get(entity, "table"),
        kind=kind,
        subject=subject,
        old_value=old,
        new_value=new,
        confidence=confidence,
        details=dict(details or {}),
        detected_at=at,
    )


def rename_change(id: int = 101, at: datetime = T0) -> ChangeView:
    """stg_orders.status renamed to order_state, as diff.py records it."""
    details = {
        "old_name": "status",
        "new_name": "order_state",
        "position": 3,
        "old_position": 3,
        "why": "same type, same position, between the same columns",
    }
    return change(
        id, "column_renamed", STG_ORDERS, "status", "status", "order_state", details=details, confidence=0.92, at=at
    )


def later(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


GenesOf = Callable[[str], "dict[str, Any] | None"]
