"""The store's read side on SQLite and PostgreSQL: lookup, DNA time travel, timelines, edges and runs."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.orm import Session

from storage.errors import AmbiguousDataset, DatasetNotFound
from storage.openmetadata.fqn import last
from storage.persistence import names, store
from storage.persistence.models import Change, Entity, LineageEdge, Snapshot, SyncRun

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def genes_for(fqn: str, entity_type: str = "table", columns: list[str] | None = None, **entity: Any) -> dict:
    return {
        "entity": {"fqn": fqn, "type": entity_type, "deleted": False, **entity},
        "schema": {"columns": [{"name": c, "position": i + 1} for i, c in enumerate(columns or [])]},
    }


class Catalog:
    """A tiny builder that writes store rows the way a sync would."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.run = self.add_run(at(-1), status="succeeded")
        self.by_fqn: dict[str, Entity] = {}

    def add_run(self, started: datetime, status: str = "succeeded", **kw: Any) -> SyncRun:
        run = SyncRun(started_at=started, finished_at=started + timedelta(minutes=1), status=status, **kw)
        self.session.add(run)
        self.session.flush()
        return run

    def entity(self, fqn: str, entity_type: str = "table", seen: datetime = T0, **kw: Any) -> Entity:
        row = Entity(fqn=fqn, entity_type=entity_type, name=last(fqn), first_seen=seen, last_seen=seen, **kw)
        self.session.add(row)
        self.session.flush()
        self.by_fqn[fqn] = row
        return row

    def snapshot(self, entity: Entity, taken: datetime, genes: dict, trust: int | None = 90) -> Snapshot:
        fingerprint = hashlib.sha256(json.dumps(genes, sort_keys=True).encode()).hexdigest()
        snap = Snapshot(
            entity_id=entity.id,
            sync_run_id=self.run.id,
            taken_at=taken,
            fingerprint=fingerprint,
            genes=genes,
            trust_score=trust,
            trust_factors={"tests": trust},
        )
        self.session.add(snap)
        self.session.flush()
        entity.current_snapshot_id, entity.fingerprint = snap.id, fingerprint
        return snap

    def change(self, entity: Entity, kind: str, when: datetime, subject: str | None = None, **kw: Any) -> None:
        self.session.add(
            Change(
                sync_run_id=self.run.id,
                entity_id=entity.id,
                entity_fqn=entity.fqn,
                entity_type=entity.entity_type,
                kind=kind,
                subject=subject,
                detected_at=when,
                **kw,
            )
        )

    def edge(self, src: str, dst: str, seen: datetime, removed: datetime | None = None, **kw: Any) -> None:
        self.session.add(
            LineageEdge(
                from_fqn=src,
                from_type="table",
                to_fqn=dst,
                to_type=kw.pop("to_type", "table"),
                first_seen=seen,
                last_seen=removed or seen,
                removed_at=removed,
                first_run_id=self.run.id,
                **kw,
            )
        )

    def commit(self) -> None:
        self.session.commit()


ORDERS = "warehouse.shop.analytics.orders"
CUSTOMERS = "warehouse.shop.raw.customers"


@pytest.fixture
def catalog(session: Session) -> Catalog:
    """Six datasets: a mart, two raw tables, a dotted name, a Cyrillic name and a dashboard."""
    cat = Catalog(session)
    for fqn in (
        "warehouse.shop.analytics.orders",
        "warehouse.shop.raw.customers",
        "warehouse.shop.raw.order_items",
        'warehouse.shop."dim.product"',
        "warehouse.магазин.заказы",
        "metabase.Sales_Dashboard",
    ):
        cat.entity(fqn, entity_type="dashboard" if fqn.startswith("metabase") else "table")
    cat.commit()
    return cat


# ------------------------------------------------------------------------------------------ resolve_fqn


def test_an_exact_fqn_resolves_to_itself(session: Session, catalog: Catalog) -> None:
    assert names.resolve_fqn(session, "warehouse.shop.analytics.orders") == "warehouse.shop.analytics.orders"


def test_case_does_not_matter_even_outside_ascii(session: Session, catalog: Catalog) -> None:
    assert names.resolve_fqn(session, "WAREHOUSE.Shop.Analytics.ORDERS") == "warehouse.shop.analytics.orders"
    assert names.resolve_fqn(session, "Warehouse.МАГАЗИН.Заказы") == "warehouse.магазин.заказы"
    assert names.resolve_fqn(session, "metabase.sales_dashboard") == "metabase.Sales_Dashboard"


def test_a_unique_name_or_suffix_is_enough(session: Session, catalog: Catalog) -> None:
    assert names.resolve_fqn(session, "orders") == "warehouse.shop.analytics.orders"
    assert names.resolve_fqn(session, " `analytics.Orders` ") == "warehouse.shop.analytics.orders"
    assert names.resolve_fqn(session, "заказы") == "warehouse.магазин.заказы"


def test_a_dotted_name_resolves_quoted_or_not(session: Session, catalog: Catalog) -> None:
    assert names.resolve_fqn(session, '"dim.product"') == 'warehouse.shop."dim.product"'
    assert names.resolve_fqn(session, "\u201cdim.product\u201d") == 'warehouse.shop."dim.product"'
    assert names.resolve_fqn(session, "dim.product") == 'warehouse.shop."dim.product"'
    assert names.resolve_fqn(session, 'shop."DIM.product"') == 'warehouse.shop."dim.product"'


def test_a_typo_is_answered_with_suggestions(session: Session, catalog: Catalog) -> None:
    with pytest.raises(DatasetNotFound) as caught:
        names.resolve_fqn(session, "ordres")
    assert caught.value.query == "ordres"
    assert caught.value.suggestions[0] == "warehouse.shop.analytics.orders"
    assert len(caught.value.suggestions) <= 5
    assert "warehouse.shop.analytics.orders" in str(caught.value)


def test_suggestions_cover_quoted_and_non_ascii_names(session: Session, catalog: Catalog) -> None:
    with pytest.raises(DatasetNotFound) as quoted:
        names.resolve_fqn(session, '"dim.prodcut"')
    assert quoted.value.suggestions[0] == 'warehouse.shop."dim.product"'
    with pytest.raises(DatasetNotFound) as cyrillic:
        names.resolve_fqn(session, "заказ")
    assert cyrillic.value.suggestions == ["warehouse.магазин.заказы"]


def test_nothing_alike_gives_no_suggestions(session: Session, catalog: Catalog) -> None:
    with pytest.raises(DatasetNotFound) as caught:
        names.resolve_fqn(session, "zzzz_qqqq")
    assert caught.value.suggestions == []
    with pytest.raises(DatasetNotFound):
        names.resolve_fqn(session, "   ")


def test_an_ambiguous_name_lists_the_candidates(session: Session, catalog: Catalog) -> None:
    catalog.entity("warehouse.shop.staging.orders")
    catalog.commit()
    with pytest.raises(AmbiguousDataset) as caught:
        names.resolve_fqn(session, "orders")
    assert caught.value.candidates == ["warehouse.shop.analytics.orders", "warehouse.shop.staging.orders"]
    assert str(caught.value).startswith(
        "'orders' matches 2 datasets: warehouse.shop.analytics.orders, warehouse.shop.staging.orders. Which one?"
    )
    assert isinstance(caught.value, DatasetNotFound)  # every not-found handler answers it too
    # a longer part of the name is unique again
    assert names.resolve_fqn(session, "staging.orders") == "warehouse.shop.staging.orders"


def test_a_name_shared_by_many_lists_ten_and_counts_the_rest(session: Session, catalog: Catalog) -> None:
    for i in range(13):
        catalog.entity(f"warehouse.s{i:02d}.orders")
    catalog.commit()
    with pytest.raises(AmbiguousDataset) as caught:
        names.resolve_fqn(session, "ORDERS")
    message = str(caught.value)
    assert message.startswith("'ORDERS' matches 14 datasets: warehouse.s00.orders, ")
    assert "…and 4 more." in message and message.count("warehouse.") == 10


def test_precedence_full_name_then_segments_then_text_and_never_a_partial_word(
    session: Session, catalog: Catalog
) -> None:
    # the FQN in any case beats a longer FQN ending with it
    catalog.entity("analytics.orders")
    # segment by segment beats the same letters inside a quoted name
    catalog.entity('warehouse.shop."x.customers"')
    catalog.commit()
    assert names.resolve_fqn(session, "Analytics.Orders") == "analytics.orders"
    assert names.resolve_fqn(session, "customers") == "warehouse.shop.raw.customers"
    # a unique partial word is only a suggestion: `order_it` is not silently `order_items`
    with pytest.raises(DatasetNotFound) as partial:
        names.resolve_fqn(session, "order_it")
    assert not isinstance(partial.value, AmbiguousDataset)
    assert partial.value.suggestions[0] == "warehouse.shop.raw.order_items"


def test_a_live_dataset_wins_over_a_deleted_namesake(session: Session, catalog: Catalog) -> None:
    catalog.entity("warehouse.old.analytics.orders", deleted_at=at(-5))
    catalog.commit()
    assert names.resolve_fqn(session, "orders") == "warehouse.shop.analytics.orders"


# ------------------------------------------------------------------------------------- DNA time travel


def test_dna_travels_in_time(session: Session, catalog: Catalog) -> None:
    orders = catalog.by_fqn[ORDERS]
    t1, t2, t3 = at(1), at(2), at(3)
    for when, cols, trust in ((t1, ["id"], 90), (t2, ["id", "amount"], 80), (t3, ["id", "total"], 60)):
        catalog.snapshot(orders, when, genes_for(orders.fqn, columns=cols), trust=trust)
    catalog.commit()
    session.expunge_all()

    assert store.dna_at(session, orders.fqn, at(0.5)) is None
    exactly_t1 = store.dna_at(session, orders.fqn, t1)
    assert exactly_t1 is not None and exactly_t1.trust_score == 90
    between = store.dna_at(session, orders.fqn, at(2.5))
    assert between is not None
    assert [c["name"] for c in between.genes["schema"]["columns"]] == ["id", "amount"]
    assert between.taken_at == t2 and between.taken_at.tzinfo is not None
    assert between.taken_at.utcoffset() == timedelta(0)
    assert between.sync_run_id == catalog.run.id and between.deleted is False
    current = store.dna_at(session, orders.fqn)
    assert current is not None and current.trust_score == 60 and current.trust_factors == {"tests": 60}
    assert store.dna_at(session, "warehouse.nope") is None


def test_aware_datetimes_round_trip_as_utc(session: Session, catalog: Catalog) -> None:
    orders = catalog.by_fqn[ORDERS]
    paris_noon = datetime(2026, 3, 1, 12, 0, tzinfo=PARIS)
    catalog.snapshot(orders, paris_noon, genes_for(orders.fqn))
    catalog.commit()
    session.expunge_all()
    snap = store.dna_at(session, orders.fqn, datetime(2026, 3, 1, 11, 0, tzinfo=UTC))
    assert snap is not None
    assert snap.taken_at == paris_noon and snap.taken_at.tzinfo == UTC
    assert snap.taken_at.hour == 11
    assert store.dna_at(session, orders.fqn, datetime(2026, 3, 1, 11, 30, tzinfo=PARIS)) is None


def test_naive_datetimes_are_refused(session: Session, catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.dna_at(session, "warehouse.shop.analytics.orders", datetime(2026, 3, 1))
    session.add(SyncRun(started_at=datetime(2026, 3, 1), status="running"))
    with pytest.raises(Exception, match="naive datetime refused"):
        session.flush()


def test_a_deleted_entity_reads_as_deleted_after_its_deletion(session: Session, catalog: Catalog) -> None:
    customers = catalog.by_fqn[CUSTOMERS]
    catalog.snapshot(customers, at(1), genes_for(customers.fqn, columns=["id"]))
    customers.deleted_at = at(5)
    catalog.commit()
    before = store.dna_at(session, customers.fqn, at(2))
    assert before is not None and before.deleted is False
    now = store.dna_at(session, customers.fqn)
    assert now is not None and now.deleted is True
    assert customers.fqn not in store.entity_types(session)
    assert customers.fqn in store.entity_columns(session, at(2))
    assert customers.fqn not in store.entity_columns(session)


def test_snapshots_between_lists_the_window(session: Session, catalog: Catalog) -> None:
    orders = catalog.by_fqn[ORDERS]
    for hour in (1, 2, 3, 4):
        catalog.snapshot(orders, at(hour), genes_for(orders.fqn, columns=[f"c{hour}"]))
    catalog.commit()
    window = store.snapshots_between(session, orders.fqn, at(2), at(3))
    assert [s.taken_at for s in window] == [at(2), at(3)]
    assert [s.taken_at for s in store.snapshots_between(session, orders.fqn, at(2.5))] == [at(3), at(4)]


def test_entity_columns_and_types_feed_the_lineage_graph(session: Session, catalog: Catalog) -> None:
    orders, customers = catalog.by_fqn[ORDERS], catalog.by_fqn[CUSTOMERS]
    catalog.snapshot(orders, at(1), genes_for(orders.fqn, columns=["id", "amount"]))
    catalog.snapshot(orders, at(3), genes_for(orders.fqn, columns=["id", "total"]))
    catalog.snapshot(customers, at(2), genes_for(customers.fqn, columns=["id", "email"]))
    catalog.commit()
    assert store.entity_columns(session) == {orders.fqn: ["id", "total"], customers.fqn: ["id", "email"]}
    assert store.entity_columns(session, at(1.5)) == {orders.fqn: ["id", "amount"]}
    types = store.entity_types(session)
    assert types["metabase.Sales_Dashboard"] == "dashboard" and types[orders.fqn] == "table"
    assert len(types) == 6


# ------------------------------------------------------------------------------------------- timelines


def test_timeline_is_ordered_and_bounded(session: Session, catalog: Catalog) -> None:
    orders, customers = catalog.by_fqn[ORDERS], catalog.by_fqn[CUSTOMERS]
    catalog.change(orders, "column_removed", at(3), "amount", old_value={"type": "DECIMAL"})
    catalog.change(orders, "column_added", at(1), "total", new_value={"type": "DECIMAL"})
    catalog.change(orders, "column_renamed", at(3), "amount", confidence=0.92, details={"to": "total"})
    catalog.change(customers, "owner_removed", at(2), "ana")
    catalog.change(orders, "tier_changed", at(9), None)
    catalog.commit()

    changes = store.timeline(session, orders.fqn, at(0), at(5))
    assert [(c.kind, c.detected_at) for c in changes] == [
        ("column_added", at(1)),
        ("column_removed", at(3)),
        ("column_renamed", at(3)),
    ]
    renamed = changes[2]
    assert renamed.confidence == pytest.approx(0.92) and renamed.details == {"to": "total"}
    assert changes[1].old_value == {"type": "DECIMAL"} and changes[1].details == {}
    assert [c.kind for c in store.timeline(session, orders.fqn, at(2))] == [
        "column_removed",
        "column_renamed",
        "tier_changed",
    ]


def test_recent_changes_filters_by_kind(session: Session, catalog: Catalog) -> None:
    orders, customers = catalog.by_fqn[ORDERS], catalog.by_fqn[CUSTOMERS]
    catalog.change(orders, "column_removed", at(3), "amount")
    catalog.change(customers, "owner_removed", at(2), "ana")
    catalog.change(orders, "column_added", at(0), "total")
    catalog.commit()
    assert [c.kind for c in store.recent_changes(session, at(1))] == ["owner_removed", "column_removed"]
    only = store.recent_changes(session, at(1), {"column_removed", "test_newly_failing"})
    assert [(c.entity_fqn, c.subject) for c in only] == [(orders.fqn, "amount")]
    assert store.recent_changes(session, at(1), set()) == []


# ----------------------------------------------------------------------------------------------- edges


def test_live_edges_travel_in_time(session: Session, catalog: Catalog) -> None:
    raw, mart = "warehouse.shop.raw.order_items", "warehouse.shop.analytics.orders"
    mapping = [{"from": [f"{raw}.amount"], "to": f"{mart}.total"}]
    catalog.edge(raw, mart, at(0), columns=mapping, pipeline_fqn="airflow.load_orders")
    catalog.edge("warehouse.shop.raw.customers", mart, at(0), removed=at(4))
    catalog.edge(mart, "metabase.Sales_Dashboard", at(2), to_type="dashboard")
    catalog.commit()

    def pairs(edges: list[store.EdgeView]) -> list[tuple[str, str]]:
        return [(e.from_fqn, e.to_fqn) for e in edges]

    assert pairs(store.live_edges(session, at(1))) == [
        ("warehouse.shop.raw.customers", mart),
        (raw, mart),
    ]
    assert pairs(store.live_edges(session, at(4))) == [(mart, "metabase.Sales_Dashboard"), (raw, mart)]
    now = store.live_edges(session)
    assert pairs(now) == pairs(store.live_edges(session, at(4)))
    loaded = next(e for e in now if e.from_fqn == raw)
    assert loaded.columns == mapping and loaded.pipeline_fqn == "airflow.load_orders"
    assert loaded.first_seen == at(0) and loaded.removed_at is None
    assert next(e for e in now if e.to_type == "dashboard").from_type == "table"
    assert store.live_edges(session, at(-1)) == []


def test_an_edge_that_reappears_gets_a_new_row(session: Session, catalog: Catalog) -> None:
    src, dst = "warehouse.shop.raw.customers", "warehouse.shop.analytics.orders"
    catalog.edge(src, dst, at(0), removed=at(2))
    catalog.edge(src, dst, at(3))
    catalog.commit()
    assert [e.first_seen for e in store.live_edges(session, at(1))] == [at(0)]
    assert store.live_edges(session, at(2.5)) == []
    assert [e.first_seen for e in store.live_edges(session)] == [at(3)]


# ------------------------------------------------------------------------------------------------ runs


def test_runs_newest_first_and_last_success(session: Session, catalog: Catalog) -> None:
    catalog.add_run(at(1), status="succeeded", stats={"entities_seen": 6}, events_cursor=1_772_355_600_000)
    catalog.add_run(at(2), status="failed", error="OpenMetadata unavailable")
    catalog.add_run(at(3), status="running", mode="incremental")
    catalog.commit()

    runs = store.last_runs(session)
    assert [r.status for r in runs] == ["running", "failed", "succeeded", "succeeded"]
    assert runs[0].mode == "incremental" and runs[0].stats == {} and runs[0].lineage_refreshed is False
    assert runs[1].error == "OpenMetadata unavailable"
    assert [r.started_at for r in store.last_runs(session, limit=2)] == [at(3), at(2)]
    ok = store.last_successful_run(session)
    assert ok is not None and ok.started_at == at(1)
    assert ok.stats == {"entities_seen": 6} and ok.events_cursor == 1_772_355_600_000


def test_an_empty_store_has_no_runs(session: Session) -> None:
    assert store.last_runs(session) == []
    assert store.last_successful_run(session) is None
    assert store.live_edges(session) == [] and store.entity_columns(session) == {}
