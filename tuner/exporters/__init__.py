"""Outputs: human reports, JSON, Prometheus metrics, and log setup."""
