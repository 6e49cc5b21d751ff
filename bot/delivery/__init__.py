"""Delivery: the outbox drainer that posts to Slack, the OpenMetadata write-back, owner mentions and the digest."""
