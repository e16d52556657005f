"""The write-ahead change journal and the state-directory lock."""
