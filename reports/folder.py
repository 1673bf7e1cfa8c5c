"""The report folder (``xreal-bench report RUN_DIR... --out DIR``): everything a paper needs from
one or more comparable runs, self-contained, with a ``README.md`` that traces each file to the
command, config hash, dataset fingerprint and weight hashes that produced it.

Runs that are not comparable are refused (:func:`xreal_bench.reports.merge.merge_runs` names each
difference); with ``allow_mixed`` each comparable group gets its own ``section-<k>/`` folder.
File names inside the folder never come from file contents: runs are ``run-<k>`` in the order
given, generators carry names checked by the safe-name rule when the run was loaded.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from xreal_bench import tables as safe
from xreal_bench.atomic import write_text_atomic
from xreal_bench.reports.merge import Merged, Section
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import REFERENCE, Run
from xreal_bench.reports.study_scores import ReaderScores

DEMO_WARNING = (
    "**Demo evaluators** (`demo:`): these numbers come from small networks trained on synthetic phantoms. They are NOT "
    "Inception-FID or torchxrayvision scores and are not comparable with published results."
)


def write_report_folder(
    runs: Sequence[Run], out: Path, options: ReportOptions, *, command: Sequence[str], allow_mixed: bool = False
) -> list[Path]:
    """Write the report folder for ``runs`` at ``out``; returns every file written. ``command``: the command line that
    makes this folder (shown in its README)."""
    from xreal_bench.reports.merge import merge_runs

    merged = merge_runs(runs, allow_mixed=allow_mixed)
    out.mkdir(parents=True, exist_ok=True)
    number = {id(run): k for k, run in enumerate(runs, start=1)}  # run-<k>: the order given, in every section
    if len(merged.sections) == 1:
        written = write_section(merged, merged.sections[0], out, options, number)
        written.append(write_readme(out, [(out, merged.sections[0])], runs, written, options, command))
        return written
    written, parts = [], []
    for k, section in enumerate(merged.sections, start=1):
        folder = out / f"section-{k}"
        written += write_section(merged, section, folder, options, number)
        parts.append((folder, section))
    written.append(write_readme(out, parts, runs, written, options, command))
    return written


def write_section(merged: Merged, section: Section, out: Path, options: ReportOptions, number: dict[int, int]) -> list[Path]:
    """Tables, figures, sample grid, leaderboard page and machine-readable results of one comparable group of runs."""
    from xreal_bench.reports.encoder_agreement import write_agreement_table
    from xreal_bench.reports.export import write_model_index, write_run_json
    from xreal_bench.reports.figures import write_figures
    from xreal_bench.reports.grid import write_samples_grid
    from xreal_bench.reports.leaderboard_files import write_leaderboard_files
    from xreal_bench.reports.study_scores import reader_scores
    from xreal_bench.reports.table_image import write_table_image
    from xreal_bench.reports.tables import paper_tables, write_table_files

    runs = list(section.runs)
    out.mkdir(parents=True, exist_ok=True)
    scores = reader_scores(runs, options.study)
    tables = paper_tables(runs, options)
    written = write_table_files(tables, out, options)
    written += write_agreement_table(runs, out, options)
    grid_png = None
    if options.figures:
        written += write_figures(
            runs, out, options, reader_scores=scores_frame(scores, runs), study_dir=scores.study if scores else None
        )
        grid = write_samples_grid(runs, out, options)
        written += grid
        from xreal_bench.reports.memorization_grid import write_memorization_grid

        written += write_memorization_grid(runs, out, options)
        grid_png = next((p for p in grid if p.suffix == ".png"), None)
        if (table := next((t for t in tables if t.name == "table_main"), None)) is not None:
            written.append(write_table_image(table, out / "table_main.png", options))
    one = Merged(sections=(section,), rank_metric=merged.rank_metric)
    written += write_leaderboard_files(one, out, decimals=options.decimals, grid_png=grid_png)
    for run in runs:
        k = number[id(run)]
        written.append(write_run_json(run, out / "results" / f"run-{k}.json"))
        written += write_model_index(run, out / "model-index" / f"run-{k}" if len(runs) > 1 else out / "model-index")
    return written


def scores_frame(scores: ReaderScores | None, runs: Sequence[Run]) -> pd.DataFrame | None:
    """The reader scores as the figures take them: one row per (run, generator, criterion) with mean and CI."""
    if scores is None:
        return None
    rows = [
        {"run_id": run.run_id, "generator": g, "criterion": c, "mean": e.value, "ci_low": e.low, "ci_high": e.high}
        for run in runs
        for g in run.generators
        for c in scores.criteria
        if (e := scores.get(run, g, c)) is not None
    ]
    return pd.DataFrame(rows, columns=["run_id", "generator", "criterion", "mean", "ci_low", "ci_high"])


def code(text: object) -> str:
    """Text from a file shown literally in Markdown."""
    return safe.markdown_cell(text)


def run_lines(k: int, run: Run) -> list[str]:
    """What produced run ``k``: folder, run id, date, config hash, dataset fingerprint, weight hashes, versions."""
    p = run.provenance
    dataset = p.get("dataset", {})
    lines = [
        f"### run-{k}: {code(run.path)}",
        "",
        f"- run id {code(run.run_id)}, results written {code(run.written or 'unknown')}",
        f"- config hash {code(p.get('config_hash', 'unknown'))} (config source {code(p.get('config_source', 'unknown'))})",
        f"- dataset {code(dataset.get('kind', '?'))} split {code(dataset.get('split', '?'))}, "
        f"{code(dataset.get('cases', '?'))} cases, fingerprint {code(dataset.get('fingerprint', 'unknown'))}",
        f"- evaluate command: {code(' '.join(map(str, p.get('command', []))) or 'unknown')}",
    ]
    for role, record in p.get("evaluators", {}).items():
        if isinstance(record, dict):
            lines.append(
                f"- evaluator {code(role)}: {code(record.get('name', '?'))}, weights sha256 "
                f"{code(record.get('weights_sha256', 'none'))} ({code(record.get('weights_status', 'unknown'))})"
            )
    for generator in run.generators:
        if generator == REFERENCE:
            continue
        weights = p.get("generators", {}).get(generator, {}).get("weights", {})
        hashes = ", ".join(f"{code(name)} {code(w.get('sha256'))} ({code(w.get('status'))})" for name, w in weights.items())
        lines.append(f"- generator {code(generator)}: {hashes or 'no weights files (reference or imported images)'}")
    versions = p.get("environment", {}).get("packages", {})
    if versions:
        lines.append("- packages: " + ", ".join(f"{code(k)} {code(v)}" for k, v in versions.items()))
    return lines + [""]


FILE_NOTES = {
    "table_main": "Table I: rows grouped by model type, best in bold, second underlined, ties where 95 % CIs overlap",
    "table_pathology": "per-pathology table of one metric",
    "table_dice_organs": "Dice per organ (lungs, heart, aorta) and their mean",
    "table_subgroups": "every metric per sex, age band and race with the fairness gaps (max - min), n and CIs",
    "table_distribution": "Fréchet distance per encoder, KID, CMMD, precision/recall/density/coverage and diversity, with CIs",
    "table_encoder_agreement": "Kendall's tau between the generator rankings of each pair of Fréchet distances, with CIs",
    "table_memorization_rate": "memorization audit: nearest-training-image similarity, aligned SSIM and the memorization rate",
    "table_lesion_in_box": "lesion-in-box adherence: Grad-CAM evidence in the box, pointing game and laterality",
    "memorization_pairs": "the closest generated / training image pairs of each generator with their similarity and SSIM",
    "metrics_bars": "every metric, one bar per generator with its 95 % CI",
    "pathology": "per-pathology heatmap of one metric",
    "fid_vs_clinical": "Fréchet distances against the clinical metrics and reader scores, with rank correlations",
    "samples_grid": "the same cases across sources: real image, anatomy map, pathology box, each generator's sample 0",
    "leaderboard": "the leaderboard with rank intervals (leaderboard.html: one file, sortable, no external assets)",
    "rank_plot": "each generator's rank with its bootstrap interval",
    "likert": "reader-study score distributions per source and criterion",
    "run-": "machine-readable results of one run (schema xreal-bench/results v1, docs/results-schema.md)",
}


def describe(path: Path) -> str:
    stem = path.name
    for prefix, note in FILE_NOTES.items():
        if stem.startswith(prefix):
            return note
    if stem.endswith(".model-index"):
        return "Hugging Face model card `model-index` block of one generator (paste into the model's README)"
    return ""


def write_readme(
    out: Path, parts, runs: Sequence[Run], written: list[Path], options: ReportOptions, command: Sequence[str]
) -> Path:
    lines = ["# xreal-bench report", ""]
    if any(run.demo for run in runs):
        lines += [DEMO_WARNING, ""]
    shown = [f"    {line}" for line in shlex.join(command).splitlines()]  # every line indented: literal code, never markup
    lines += ["Made by (run it again to regenerate this folder):", "", *shown, ""]
    lines += [f"Tables: CI style `{options.ci}`, {options.decimals} decimals. Every number traces to the runs below.", ""]
    if len(parts) > 1:
        lines += ["The runs are not all comparable (`--allow-mixed`): each section holds one comparable group.", ""]
        for folder, section in parts:
            lines.append(f"- `{folder.name}/`: " + ", ".join(code(r.label) for r in section.runs))
            lines += [f"  - {code(d.message())}" for d in section.differences]
        lines.append("")
    lines += ["## Files", ""]
    stems: dict[Path, list[str]] = {}
    for path in sorted(written):
        stems.setdefault(path.relative_to(out).with_suffix(""), []).append(path.suffix.lstrip("."))
    for stem, suffixes in stems.items():
        name = f"{stem.as_posix()}.{suffixes[0]}" if len(suffixes) == 1 else f"{stem.as_posix()}.{{{','.join(suffixes)}}}"
        note = describe(out / stem)
        lines.append(f"- `{name}`" + (f": {note}" if note else ""))
    lines += ["", "## Runs", ""]
    for k, run in enumerate(runs, start=1):
        lines += run_lines(k, run)
    path = out / "README.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
