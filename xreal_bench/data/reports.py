"""FINDINGS / IMPRESSION extraction from MIMIC-CXR free-text reports.

A report is plain text with upper-case section headers ending in a colon at the start of a
line (``FINDINGS:``, ``IMPRESSION:``, ``COMPARISON:``, ``INDICATION:`` ...); the text of a
section may start on the header's line and runs to the next header or the end of the file.
Title lines without a colon (``FINAL REPORT``) are not headers and do not end a section, but
they never occur inside FINDINGS/IMPRESSION in practice. Either section may be missing; a
header repeated twice has its texts joined. Whitespace (line breaks, indentation) is
collapsed to single spaces. ``FINDING:``/``IMPRESSIONS:`` are accepted as spellings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: A header: start of line, upper-case words (digits and ``/ & ( ) , ' -`` allowed), a colon.
HEADER = re.compile(r"^[ \t]*([A-Z][A-Z0-9 /&(),'-]*?)[ \t]*:", re.MULTILINE)

SECTION_NAMES = {
    "FINDINGS": "findings",
    "FINDING": "findings",
    "IMPRESSION": "impression",
    "IMPRESSIONS": "impression",
}


@dataclass(frozen=True)
class ReportSections:
    findings: str = ""
    impression: str = ""


def parse_report(text: str) -> ReportSections:
    """Extract the FINDINGS and IMPRESSION sections (empty strings when absent)."""
    found: dict[str, list[str]] = {"findings": [], "impression": []}
    headers = list(HEADER.finditer(text))
    for i, match in enumerate(headers):
        name = SECTION_NAMES.get(" ".join(match.group(1).split()))
        if name is None:
            continue
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = " ".join(text[match.end() : end].split())
        if body:
            found[name].append(body)
    return ReportSections(findings=" ".join(found["findings"]), impression=" ".join(found["impression"]))


def report_path(base: Path, subject_id: str, study_id: str) -> Path:
    """``<base>/files/p<first two digits>/p<subject>/s<study>.txt`` (the MIMIC-CXR layout)."""
    return base / "files" / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}.txt"


def read_report(path: Path) -> ReportSections | None:
    """Parse one report file; ``None`` when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    return parse_report(text)
