"""The sync: read OpenMetadata, write DNA snapshots and changes; full, incremental and targeted runs."""
