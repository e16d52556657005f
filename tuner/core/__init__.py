"""The pure decision core: evaluate -> plan -> guards. No I/O imports (checked by tests)."""
