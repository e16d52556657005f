"""The write edge: one small class per kind of change, all with the same protocol."""
