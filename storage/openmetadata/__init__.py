"""The OpenMetadata client: HTTP, paging, the typed models, lineage, data quality, versions and FQNs."""
