"""The runtime: `dnabot serve` (replicas, the scheduler), the HTTP app and the OpenMetadata webhook."""
