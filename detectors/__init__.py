"""Vision core: motion gating, detector backends, batching, tracking and zone rules."""
