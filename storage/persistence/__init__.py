"""Persistence: tables, migrations and queries (store, incidents, outbox, leases, graph cache)."""
