"""Errors a user's data can cause.

`DataError` stops a run: a dataset with nothing readable, a missing folder or list file, a bad
parameter. `UnreadableFile` is per file (corrupt, truncated, empty, not an image): datasets catch it,
count the file, log its name and serve another sample, so a long run never dies of one bad file.
"""
from __future__ import annotations


class DataError(RuntimeError):
    """Data a user pointed at is missing or unusable; the message says what and where."""


class UnreadableFile(DataError):
    """One file cannot be decoded. Datasets skip it (counted and logged) instead of stopping."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}")
