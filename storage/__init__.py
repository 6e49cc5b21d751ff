"""The living DNA store: OpenMetadata client, DNA snapshots, diffs, lineage graph and sync."""
