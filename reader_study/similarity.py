"""Near-identical study images across sources, found when a study is built.

Two images of different sources are reported when their files are byte-identical or when, after
the study's re-encoding chain, their :data:`THUMBNAIL`-pixel area-averaged thumbnails differ by
less than :data:`MAX_MEAN_DIFFERENCE` grey levels (of 255) on average. Every pair of sources and
cases is compared, so a generator that copies a real image of another case is caught too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

THUMBNAIL = 32
MAX_MEAN_DIFFERENCE = 1.0
LISTED = 20


@dataclass(frozen=True)
class StudyImage:
    source: str
    case: str
    sha256: str
    thumbnail: np.ndarray  # THUMBNAIL x THUMBNAIL float32 grey levels


@dataclass(frozen=True)
class NearDuplicate:
    source_a: str
    case_a: str
    source_b: str
    case_b: str
    mean_difference: float  # grey levels of 255 on the thumbnails
    identical: bool  # byte-identical study files

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        how = "identical bytes" if self.identical else f"mean difference {self.mean_difference:.2f}"
        return f"{self.source_a}/{self.case_a} ~ {self.source_b}/{self.case_b} ({how})"


def study_image(source: str, case: str, sha256: str, pixels: np.ndarray) -> StudyImage:
    """Record one re-encoded 8-bit image with its area-averaged thumbnail."""
    small = Image.fromarray(pixels).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    return StudyImage(source, case, sha256, np.asarray(small, dtype=np.float32))


def near_duplicates(images: Sequence[StudyImage]) -> list[NearDuplicate]:
    """Pairs of images of different sources that are byte-identical or near-identical."""
    if not images:
        return []
    stack = np.stack([image.thumbnail.ravel() for image in images])
    found: list[NearDuplicate] = []
    for i, first in enumerate(images[:-1]):
        differences = np.abs(stack[i + 1 :] - stack[i]).mean(axis=1)
        for offset in np.flatnonzero(differences < MAX_MEAN_DIFFERENCE):
            second = images[i + 1 + int(offset)]
            if second.source != first.source:
                found.append(
                    NearDuplicate(
                        first.source, first.case, second.source, second.case,
                        round(float(differences[offset]), 4), first.sha256 == second.sha256,
                    )
                )  # fmt: skip
    return found


def warning_text(pairs: Sequence[NearDuplicate]) -> str:
    """The build-time warning listing the pairs (the first :data:`LISTED`)."""
    lines = [
        f"warning: {len(pairs)} near-identical image pair(s) across sources (identical files, or thumbnails "
        f"within {MAX_MEAN_DIFFERENCE:g} grey level on average); readers cannot tell these apart:"
    ]
    lines += [f"  {pair.describe()}" for pair in pairs[:LISTED]]
    if len(pairs) > LISTED:
        lines.append(f"  ... and {len(pairs) - LISTED} more (all in the study database's meta 'near_duplicates')")
    return "\n".join(lines)
