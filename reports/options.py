"""What a report folder is made with (``xreal-bench report`` options, keyword-only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CIStyle = Literal["brackets", "pm"]
Format = Literal["md", "csv", "tex"]


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """``ci``: ``brackets`` shows ``0.712 [0.701, 0.723]``, ``pm`` shows ``0.712 ± 0.011`` (half the interval's
    width); ``grid_cases`` cases in the sample grid, chosen with ``grid_seed`` unless ``cases`` names them;
    ``study``: an analysed reader study of these runs (None: ``RUN_DIR/study`` when it has been analysed)."""

    decimals: int = 3
    ci: CIStyle = "brackets"
    formats: tuple[Format, ...] = ("md", "csv", "tex")
    figures: bool = True
    grid_cases: int = 4
    grid_seed: int = 0
    cases: tuple[str, ...] = ()
    study: Path | None = None
