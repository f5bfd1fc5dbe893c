"""Errors the spool raises to its callers; each message is written for an operator."""

from __future__ import annotations


class SpoolError(Exception):
    """The spool cannot be used; the message says why and what to do."""


class SpoolLocked(SpoolError):
    """Another running instance holds the spool directory."""
