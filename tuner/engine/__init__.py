"""The imperative shell: observe, decide with the pure core, act (later), report."""
