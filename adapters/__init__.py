"""Source adapters: devices and systems → typed :class:`hub.events.SourceEvent` s and camera streams.

The contract and its tools:

- :mod:`adapters.base` — what every adapter implements (config model, ``probe``, ``events``,
  ``streams``, ``command``); :mod:`adapters.camera` — the config base of every camera kind.
- :mod:`adapters.registry` — kinds by ``@register`` (in-tree) and the ``sanwang_hub.adapters`` entry
  point group (installed packages); :mod:`adapters.conformance` — the suite every adapter passes.

Built-in kinds, one module each:

- :mod:`adapters.generic` — ``rtsp``, ``mjpeg``, ``file``, ``snapshot`` cameras from configuration only.
- :mod:`adapters.onvif` — ``onvif`` cameras (:mod:`adapters.onvif_client`: connection, auth, clock
  offset; :mod:`adapters.onvif_events`: PullPoint subscriptions); :mod:`adapters.discovery` —
  WS-Discovery for ``hub discover`` (:mod:`adapters.wsdiscovery`: the messages,
  :mod:`adapters.discovery_cli`: snippets and the command).
- :mod:`adapters.mqtt` — ``mqtt`` sources: door contacts, smart locks and village systems on a broker.
  Built from :mod:`adapters.mqtt_client` (the connection: MQTT 3.1.1/5, TLS, persistent sessions),
  :mod:`adapters.mqtt_broker` (URLs, TLS contexts, probing), :mod:`adapters.mqtt_message`,
  :mod:`adapters.mqtt_devices` (``DeviceHub``: routing, counting bad payloads, timers),
  :mod:`adapters.device_state` (per-device rules: forced doors, failed attempts, held open, battery) and
  :mod:`adapters.dialects` (pure decoders: Zigbee2MQTT, JSON, Tasmota, Home Assistant discovery and the
  declarative ``mapping``).
"""
