"""Errors of the CMS side, importable without pulling in a backend."""

from __future__ import annotations


class CmsConfigError(Exception):
    """The CMS configuration (connection settings, mapping or schema) cannot work; fix config, don't retry."""
