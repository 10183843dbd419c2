"""Source adapters: turn devices and village systems into typed :class:`hub.events.SourceEvent` s.

- :mod:`adapters.mqtt_client` — the hub's MQTT connection (reconnects forever, re-subscribes,
  queues outgoing messages while the broker is away).
- :mod:`adapters.mqtt_devices` — door contacts and smart locks on MQTT (Zigbee2MQTT and a plain JSON
  dialect) decoded into ``source_event`` and ``device`` bus messages.
- :mod:`adapters.dialects` — the pure payload decoders, one module per dialect.
"""
