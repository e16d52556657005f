"""wg-tuner: an auto-tuning remediation controller for WireGuard hosts."""

__version__ = "0.1.0"
