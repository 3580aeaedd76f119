"""The one Definitions object of the code location; modules export plain lists, this file merges."""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions(assets=[], asset_checks=[], jobs=[], schedules=[], sensors=[], resources={})
