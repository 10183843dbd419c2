"""Secrets never shown: URL passwords in URLs, free text and mappings."""

from __future__ import annotations

from hub.redact import redact_mapping, redact_text, redact_url


def test_a_password_containing_at_signs_is_hidden_whole() -> None:
    assert redact_url("rtsp://admin:p@ss@cam:554/a") == "rtsp://admin:***@cam:554/a"
    text = "open failed: rtsp://admin:p@ss@cam/a and rtsp://u:x@y:1/b"
    assert redact_text(text) == "open failed: rtsp://admin:***@cam/a and rtsp://u:***@y:1/b"


def test_a_bad_port_does_not_break_redaction() -> None:
    assert redact_url("rtsp://u:pw12@host:abc/") == "rtsp://u:***@host:abc/"


def test_urls_without_credentials_are_unchanged() -> None:
    assert redact_url("http://10.0.0.9/video.mjpg") == "http://10.0.0.9/video.mjpg"
    assert redact_text("no url here") == "no url here"


def test_mappings_hide_secret_keys_and_url_passwords() -> None:
    data = {"token": "t0k3n", "url": "rtsp://a:b@c/d", "nested": [{"password": "x"}], "name": "gate"}
    assert redact_mapping(data) == {"token": "***", "url": "rtsp://a:***@c/d",
                                    "nested": [{"password": "***"}], "name": "gate"}
