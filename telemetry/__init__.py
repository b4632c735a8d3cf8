"""Telemetry: collectors (host, GPU), the sampler, threshold monitoring and the event store."""
