"""Baselines that need no optimisation (chapter *Experiments*, SPEC §3)."""
from __future__ import annotations

from ..problem import Placement, Problem
from . import register


@register("none")
def no_edge_caching(problem: Problem) -> Placement:
    """No expert on any edge server: every call not served locally goes to the cloud."""
    return Placement.empty(problem, method="none")
