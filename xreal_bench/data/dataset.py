"""The configured evaluation set: real MIMIC-CXR-JPG or the synthetic demo, scanned the same way."""

from __future__ import annotations

import sys
from pathlib import Path

from xreal_bench.config import BenchConfig
from xreal_bench.data.chexgenbench import follow_prompt_file, read_prompt_file
from xreal_bench.data.mimic import DatasetScan, scan_mimic


def load_dataset(
    cfg: BenchConfig, split: str | None = None, progress: bool = True, *, announce: bool = True, preselect: int = 0
) -> DatasetScan:
    """Scan ``cfg.dataset`` (``split`` overrides ``[dataset].split``).

    For ``kind = "synthetic"`` the demo tree is written first if absent or outdated; it has
    the MIMIC-CXR-JPG layout (with MIMIC-IV-format demographics under ``mimic-iv/``), so both
    kinds go through :func:`scan_mimic`; ``[dataset].demographics`` is joined for either. With
    ``progress`` and ``announce``, the scan's notes (ids read leniently, repeated rows) go to stderr.
    ``preselect``: see :func:`~xreal_bench.data.mimic.scan_mimic` (seeded by ``metrics.bootstrap_seed``).
    With ``[dataset].prompts_file``, the evaluated split keeps exactly that file's images and prompts
    (:func:`~xreal_bench.data.chexgenbench.follow_prompt_file`; ``run.num_cases`` then draws among them).
    """
    ds = cfg.dataset
    root = Path(ds.root)
    follow = bool(ds.prompts_file) and not preselect and (split or ds.split) == ds.split
    if ds.kind == "synthetic":
        from xreal_bench.demo.synthetic import ensure_dataset

        root = ensure_dataset(root, ds.synthetic)
    scan = scan_mimic(
        root,
        split=split or ds.split,
        views=tuple(ds.views),
        labeler=ds.labeler,
        policy=ds.label_policy,
        reports_root=ds.reports_root or None,
        demographics=ds.demographics or None,
        num_cases=0 if follow else cfg.run.num_cases,
        seed=cfg.metrics.bootstrap_seed if preselect else cfg.run.seed,
        progress=progress,
        preselect=preselect,
    )
    if follow:
        scan = follow_prompt_file(
            scan,
            read_prompt_file(ds.prompts_file),
            labels_from=ds.prompts_labels,
            policy=ds.label_policy,
            num_cases=cfg.run.num_cases,
            seed=cfg.run.seed,
        )
    if progress and announce:
        for note in scan.notes:
            print(f"note: {note}", file=sys.stderr)
    return scan
