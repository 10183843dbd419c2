"""Alerts: rule hits and source events become alerts, fused into incidents."""
