"""Small helpers shared by the benchmarks: percentiles and a text table."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sortedValues: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (C{nan} when empty)."""
    if not sortedValues:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sortedValues)))
    return sortedValues[min(rank, len(sortedValues)) - 1]


def ratio(ours: float, baseline: float) -> float:
    """C{ours / baseline}, C{nan} when the baseline is zero or missing."""
    if not baseline or math.isnan(baseline) or math.isnan(ours):
        return math.nan
    return ours / baseline


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns except the first, which is left-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def fmt(value: float, digits: int = 0) -> str:
    """A number for the table; C{-} for nan."""
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"
