"""The read edge: turn the host into a Snapshot. Reads only, never writes."""
