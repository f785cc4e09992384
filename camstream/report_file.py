"""Moved to `camstream.storage` (kept until its last importers move)."""

from camstream.storage import write_json_atomic

__all__ = ["write_json_atomic"]
