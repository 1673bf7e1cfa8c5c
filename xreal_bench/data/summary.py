"""What a dataset scan kept and excluded: a JSON-ready dict and a readable table."""

from __future__ import annotations

from typing import Any

from xreal_bench.data.mimic import DatasetScan

SUMMARY_KEYS = ("cases", "by_view", "positives", "missing", "corrupt", "label_policy")
#: With ``[dataset].demographics``: one more key, ``demographics``, holding these counts of kept images.
DEMOGRAPHICS_KEYS = ("complete", "age", "sex", "race", "not_found")


def demographics_counts(scan: DatasetScan) -> dict[str, int]:
    """Kept images with complete demographics (age, sex and race), with each one, and whose subject is not in MIMIC-IV."""
    found = [c.demographics for c in scan.cases if c.demographics is not None]
    return {
        "complete": sum(d.complete for d in found),
        "age": sum(d.age is not None for d in found),
        "sex": sum(bool(d.sex) for d in found),
        "race": sum(bool(d.race) for d in found),
        "not_found": sum(d.source == "none" for d in found),
    }


def summarize(scan: DatasetScan) -> dict[str, Any]:
    """``cases, by_view, positives, missing, corrupt, label_policy`` (missing/corrupt are counts), and
    ``demographics`` (:func:`demographics_counts`) when they are joined."""
    out: dict[str, Any] = {
        "cases": len(scan.cases),
        "by_view": dict(scan.by_view),
        "positives": dict(scan.positives),
        "missing": len(scan.missing),
        "corrupt": len(scan.corrupt),
        "label_policy": dict(scan.label_policy),
    }
    if scan.demographics:
        out["demographics"] = demographics_counts(scan)
    return out


def format_summary(scan: DatasetScan, examples: int = 5) -> str:
    """A plain-text table of :func:`summarize` plus where the data came from, the first missing files
    (with the paths looked for), the first corrupt ones (with the reason) and the scan's notes."""
    s = summarize(scan)
    n = s["cases"]
    lines = [
        f"dataset root:  {scan.root}",
        f"split:         {scan.split}",
        f"kept images:   {n}" + (f" (stratified subsample of {scan.available} usable)" if n < scan.available else ""),
        f"with report:   {scan.with_report}",
        *demographics_lines(s.get("demographics"), n),
        f"missing files: {s['missing']}",
        f"corrupt files: {s['corrupt']}",
        f"fingerprint:   {scan.fingerprint[:16]}",
        "label policy:  " + ", ".join(f"{k} -> {v}" for k, v in s["label_policy"].items()),
        "",
        "view        images",
        *(f"{view:<10}  {count:>6}" for view, count in s["by_view"].items()),
        "",
        "label                         positives       %",
    ]
    for name, count in s["positives"].items():
        share = 100.0 * count / n if n else 0.0
        lines.append(f"{name:<28}  {count:>9}  {share:6.1f}")
    for title, ids in (("missing", scan.missing), ("corrupt", scan.corrupt)):
        if ids:
            lines += ["", f"{title} images (first {min(examples, len(ids))} of {len(ids)}):"]
            lines += [f"  {dicom_id}: {scan.reasons.get(dicom_id, '')}" for dicom_id in ids[:examples]]
    if scan.notes:
        lines += ["", "notes:", *(f"  {note}" for note in scan.notes)]
    return "\n".join(lines)


def demographics_lines(counts: dict[str, int] | None, n: int) -> list[str]:
    if counts is None:
        return []
    return [
        f"demographics:  {counts['complete']} of {n} complete (age, sex and race); age {counts['age']}, sex {counts['sex']}, "
        f"race {counts['race']}; subject not in MIMIC-IV {counts['not_found']}"
    ]
