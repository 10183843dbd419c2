"""Benchmarks, each against a baseline measured in the same run (docs/performance.md has the numbers):

- ``python -m benchmarks.cameras`` (``make bench``): cameras per 2 cores, hub vs. ultralytics.
- ``python -m benchmarks.adapters`` (``make bench-adapters``): MQTT dialect decoding vs. ``json.loads``,
  MQTT end to end vs. a raw aiomqtt subscriber, ONVIF probe and PullPoint latency vs. raw onvif-zeep-async.
"""
