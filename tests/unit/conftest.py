"""Fixtures for the unit firmware tests."""

from support.smallfs import small_fs  # noqa: F401  (a small real filesystem to fill up)
