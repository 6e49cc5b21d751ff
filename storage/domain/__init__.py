"""The domain: DNA genes, trust scores, snapshot diffs and the lineage graph (no database, no network)."""
