"""Delivery channels: one interface (:class:`~alerts.channels.base.Channel`) for every way a notice
reaches people or other platforms (WebSocket, MQTT, webhooks, WeCom / DingTalk / Feishu robots)."""
