"""Constructed run directories in the real formats, for report, leaderboard and dashboard tests.

:func:`write_run` writes what ``evaluate`` leaves behind — ``results.csv`` / ``results.json``
(through :func:`xreal_bench.results.write_results`), ``cases.jsonl`` (through
:func:`xreal_bench.cases.write_cases`), ``per_image.csv``, ``bootstrap.npz``, and per generator
``images/``, ``manifest.jsonl`` and ``identity.json`` — from per-case values the test chooses,
so every number a report shows has a known answer:

- a per-image metric's value is the mean of its per-image values, its CI the percentile interval
  of the stored draws (case resamples drawn with ``seed``, the same positions for every source);
- other metrics (FID, F1, ...) take the value given in ``values`` and draws centred on it with the
  given ``spread``;
- with ``subgroups`` (default), a per-image metric also gets a row per sex / age band / race subgroup of the
  cases (mean and draws over the subgroup's cases, as above) and the fairness gap rows
  (:func:`xreal_bench.metrics.fairness.gap_rows`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from xreal_bench.cases import write_cases
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.metrics import table as metric_table
from xreal_bench.metrics.context import ResultRow
from xreal_bench.metrics.fairness import gap_rows
from xreal_bench.results import write_results
from xreal_bench.rundir import GeneratorDir, ManifestEntry, append_line, image_name
from xreal_bench.subgroups import case_subgroups
from xreal_bench.types import Box, BoxSet, Case, CaseFacts, Demographics

PER_IMAGE = ("ms_ssim", "dice_lungs", "dice_heart", "dice_aorta", "dice")
SEXES = ("female", "male")
RACES = ("WHITE", "BLACK", "ASIAN")


def case_ids(n: int) -> list[str]:
    return [f"{k:08x}-0000-0000-0000-000000000000" for k in range(n)]


def make_cases(n: int, root: Path, *, demographics: bool = True) -> list[CaseFacts]:
    """``n`` cases with images under ``root`` (one positive label each, cycling), boxes and demographics."""
    facts = []
    labels = ("Cardiomegaly", "Edema", "Pleural Effusion", "No Finding")
    for k, case_id in enumerate(case_ids(n)):
        label = labels[k % len(labels)]
        path = root / "files" / f"{case_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32), 40 + 5 * k % 200, np.uint8)).save(path)
        values = tuple(1 if name == label else 0 for name in CHEXPERT_LABELS)
        people = Demographics(40 + 7 * k % 50, SEXES[k % 2], RACES[k % 3], "mimic-iv", ()) if demographics else None
        case = Case(case_id, path, f"1{k:07d}", f"5{k:07d}", "PA", values, impression=f"{label}.", demographics=people)
        boxes = BoxSet("boxes_csv", (Box(label, 0.2, 0.3, 0.6, 0.7),), ()) if label != "No Finding" else None
        facts.append(CaseFacts(case, boxes=boxes))
    return facts


def draws_for(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``values`` over case resamples (the same positions for every source of a run)."""
    picks = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    return values[picks].mean(axis=1)


def write_run(
    out: Path,
    *,
    sources: Mapping[str, Mapping[str, float]],
    per_case: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    n_cases: int = 8,
    seed: int = 0,
    resamples: int = 50,
    spread: float = 0.05,
    fingerprint: str = "f" * 64,
    evaluator: str = "torchxrayvision:densenet121-res224-all",
    inputs: Mapping[str, Sequence[str]] | None = None,
    written: str = "2026-11-20T10:00:00+00:00",
    run_id: str | None = None,
    config_extra: Mapping[str, object] | None = None,
    bootstrap_seed: int | None = None,
    subgroups: bool = True,
) -> Path:
    """Write a run directory at ``out``.

    ``sources``: generator -> {metric: value} for metrics without per-image values (fid, f1_macro, ...);
    ``per_case``: generator -> {per-image metric: one value per case} (ms_ssim, dice_*), scored as the
    mean with a draw-based CI; ``inputs``: generator -> its recorded conditioning inputs (Table I group);
    ``bootstrap_seed``: the seed of the case resamples (recorded as ``metrics.bootstrap_seed``), default ``seed``
    (not recorded in the config, as runs written before the setting existed).
    """
    resample_seed = seed if bootstrap_seed is None else bootstrap_seed
    out.mkdir(parents=True, exist_ok=True)
    facts = make_cases(n_cases, out / "data")
    ids = [f.case_id for f in facts]
    write_cases(out, facts)
    per_case = per_case or {}
    rows: list[ResultRow] = []
    draws: dict[str, np.ndarray] = {}
    per_image: list[dict] = []
    rng = np.random.default_rng(seed + 1)
    names = list(dict.fromkeys([*sources, *per_case]))
    members: dict[str, list[int]] = {}
    for k, groups in enumerate(case_subgroups({f.case_id: f.case for f in facts}).values()):
        for subgroup in groups:
            members.setdefault(subgroup.subset, []).append(k)
    for generator in names:
        for metric, value in sources.get(generator, {}).items():
            entry = metric_table.row_metric(metric)
            d = value + spread * rng.standard_normal(resamples)
            low, high = np.percentile(d, [2.5, 97.5])
            n = n_cases if entry.n_unit == "cases" else n_cases * (1 if generator == "real" else 2)
            rows.append(ResultRow(generator, metric, value, float(low), float(high), n, "all", label_for(metric, evaluator)))
            draws[f"{generator}|{metric}|all"] = d
        columns = {m: np.asarray(v, dtype=np.float64) for m, v in per_case.get(generator, {}).items()}
        for metric, values in columns.items():
            d = draws_for(values, resamples, resample_seed)
            low, high = np.percentile(d, [2.5, 97.5])
            rows.append(ResultRow(generator, metric, float(values.mean()), float(low), float(high), n_cases, "all", "pixels"))
            draws[f"{generator}|{metric}|all"] = d
            if subgroups:
                found = subgroup_rows(generator, metric, values, members, resamples, resample_seed)
                found += gap_rows(found, {}, confidence=0.95)
                rows += found
                draws.update({f"{generator}|{metric}|{r.subset}": r.draws for r in found if r.draws is not None})
        for k, case_id in enumerate(ids):
            per_image.append(
                {"generator": generator, "case_id": case_id, "sample_index": 0, **{m: v[k] for m, v in columns.items()}}
            )
        write_images(out, generator, ids, (inputs or {}).get(generator, ("labels", "anatomy")), seed)
    config = {
        "dataset": {"kind": "mimic", "root": str(out / "data"), "split": "test", "square": "crop", "labeler": "chexpert"},
        "conditioning": {"anatomy": "none", "resolution": 32},
        "metrics": {
            "evaluators": "standard",
            "thresholds": "youden",
            "bootstrap": resamples,
            **({} if bootstrap_seed is None else {"bootstrap_seed": bootstrap_seed}),
        },
        "run": {"out": str(out), "seed": seed, "resolution": 32, "samples_per_condition": 1},
        **(config_extra or {}),
    }
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    provenance = {
        "run_id": run_id or f"{out.name}-{seed}",
        "command": ["xreal-bench", "run"],
        "config_hash": config_hash,
        "config": config,
        "dataset": {"kind": "mimic", "split": "test", "fingerprint": fingerprint, "cases": n_cases},
        "evaluators": {"suite": "standard", "classifier": {"name": evaluator, "weights_sha256": "a" * 64}},
        "generators": {g: {"identity": json.loads((out / g / "identity.json").read_text()), "weights": {}} for g in names},
        "thresholds": {"policy": "youden"},
        "seeds": {"run": seed, "bootstrap": resample_seed},
        "bootstrap": {"resamples": resamples, "fid_resamples": resamples, "confidence": 0.95},
    }
    write_results(out, rows, provenance)
    text = (out / "results.json").read_text()
    (out / "results.json").write_text(text.replace(json.loads(text)["written"], written, 1))
    import pandas as pd

    pd.DataFrame(per_image).to_csv(out / "per_image.csv", index=False)
    meta = {
        "format": 1,
        "seed": resample_seed,
        "confidence": 0.95,
        "cases": {g: hashlib.sha256("\n".join(ids).encode()).hexdigest() for g in names},
    }
    np.savez(out / "bootstrap.npz", __meta__=np.array(json.dumps(meta)), **draws)
    return out


def subgroup_rows(
    generator: str, metric: str, values: np.ndarray, members: Mapping[str, list[int]], resamples: int, seed: int
) -> list[ResultRow]:
    """A per-image metric's row per subgroup: the mean over its cases, draws over its cases' resamples."""
    rows = []
    for subset, cases in members.items():
        d = draws_for(values[cases], resamples, seed)
        low, high = np.percentile(d, [2.5, 97.5])
        mean = float(values[cases].mean())
        rows.append(
            ResultRow(generator, metric, mean, float(low), float(high), len(cases), subset, "pixels", n_unit="cases", draws=d)
        )
    return rows


def label_for(metric: str, evaluator: str) -> str:
    return "pixels" if metric_table.row_metric(metric).role is None else evaluator


def write_images(out: Path, generator: str, ids: Sequence[str], inputs: Sequence[str], seed: int) -> None:
    """A folder per source as the harness leaves it: images, manifest lines, identity.json."""
    folder = GeneratorDir(out, generator)
    folder.images.mkdir(parents=True, exist_ok=True)
    shade = int(hashlib.sha256(generator.encode()).digest()[0])
    for case_id in ids:
        Image.fromarray(np.full((32, 32), shade, np.uint8)).save(folder.image_path(case_id, 0))
        entry = ManifestEntry(
            generator=generator, case_id=case_id, sample_index=0, seed=seed, status="ok", file=f"images/{image_name(case_id, 0)}"
        )
        append_line(folder.manifest, entry)
    module = "xreal_bench.generators.reference:RealGenerator" if generator == "real" else f"tests.{generator}:Model"
    identity = {
        "fields": {"code.generator": module, "run.seed": seed, "run.resolution": 32},
        "format": 1,
        "generator": generator,
        "inputs": sorted(inputs),
        "type": "generated",
    }
    folder.identity.write_text(json.dumps(identity))


def edit(run: Path, change: Callable[[dict], None]) -> Path:
    """Change the run's results.json in place (what a different evaluate would have recorded)."""
    path = run / "results.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return run
