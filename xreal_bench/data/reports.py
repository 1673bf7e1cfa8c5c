"""FINDINGS / IMPRESSION extraction from MIMIC-CXR free-text reports.

A report is plain text with upper-case section headers ending in a colon at the start of a
line (``FINDINGS:``, ``IMPRESSION:``, ``COMPARISON:``, ``INDICATION:`` ...); the text of a
section may start on the header's line and runs to the next header or the end of the file.
Title lines without a colon (``FINAL REPORT``) are not headers and do not end a section, but
they never occur inside FINDINGS/IMPRESSION in practice. Either section may be missing; a
header repeated twice has its texts joined. Whitespace (line breaks, indentation) is
collapsed to single spaces. ``FINDING:``/``IMPRESSIONS:`` are accepted as spellings.

:func:`machex_report` is the other reading: the text Cheff was trained on (MaCheX's ``report``).
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


#: MaCheX's headers, matched exactly (case-sensitive, anywhere in the text, colon included).
MACHEX_FINDINGS = "FINDINGS:"
MACHEX_IMPRESSION = "IMPRESSION:"
SPACE_RUN = re.compile(" +")


@dataclass(frozen=True)
class ReportSections:
    findings: str = ""
    impression: str = ""
    report_text: str = ""  # machex_report of the whole file


def machex_report(text: str) -> str:
    r"""The report text as MaCheX stores it in its ``report`` field (what Cheff was trained on).

    The rule of saiboxx/machex ``machex.py``, ``MIMICParser._get_meta_data`` (lines 404-429 at
    commit e5d1a858), step by step:

    1. the text after the *last* ``FINDINGS:`` when the text holds one (findings, impression and
       any later section such as ``NOTIFICATION:``); otherwise the text after the last
       ``IMPRESSION:``; with neither header the whole text (``str.split`` on an absent
       separator returns the text itself), title and ``INDICATION:``/``HISTORY:`` included;
    2. every ``IMPRESSION:`` removed (the header only, its text stays);
    3. every line break removed -- *not* replaced by a space. MIMIC-CXR report lines start with a
       space, so words usually stay apart, but a line that does not (``clear.\nNo`` ->
       ``clear.No``) is glued to the previous one, exactly as in the training text;
    4. runs of spaces (only ``" "``; tabs stay) collapsed to one, then outer whitespace stripped.

    Headers match case-sensitively anywhere in the text, as ``in``/``split`` do there. The
    original reads the file in text mode, which turns ``\r\n`` and ``\r`` into ``\n``; the
    same translation is applied here first, so raw and decoded file text give the same result.
    A study without a report file has ``""`` there (and here: :func:`read_report` gives none).
    Files are decoded as UTF-8 here (the original: the locale's encoding; MIMIC-CXR is ASCII).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if MACHEX_FINDINGS in text:
        text = text.split(MACHEX_FINDINGS)[-1]
    else:
        text = text.split(MACHEX_IMPRESSION)[-1]
    text = text.replace(MACHEX_IMPRESSION, "").replace("\n", "")
    return SPACE_RUN.sub(" ", text).strip()


def parse_report(text: str) -> ReportSections:
    """Extract the FINDINGS and IMPRESSION sections (empty strings when absent) and the MaCheX text."""
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
    return ReportSections(
        findings=" ".join(found["findings"]),
        impression=" ".join(found["impression"]),
        report_text=machex_report(text),
    )


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
