"""Reference generators that need no weights: sanity rows with known expected rankings.

- ``real``: the case's own image — the upper bound (the paper's "Real Images" row).
- ``noise``: smooth random structure around the dataset's mean intensity — the lower bound.
- ``shuffled``: the real image of a *different* case chosen by seed — perfectly realistic but
  unconditioned: FID close to ``real``, Dice / F1 at chance.
- ``memorizer``: the real image of a *training* case (``dataset.train_split``, the memorization
  audit's subsample) sharing the condition's first positive pathology, chosen by seed — a model
  that memorized its training set: the memorization rate must be near 100 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xreal_bench.data.mimic import strata
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.imaging import conform, load_grayscale
from xreal_bench.types import Condition
from xreal_bench.validation import require


class RealGenerator(Generator):
    type_name = "real"
    description = "the case's own real image (upper bound, the 'Real Images' row)"
    inputs = frozenset({"image"})

    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        # As decoded: the harness's one path (to_run_image) stretches, squares and resizes it exactly like the real side.
        return GeneratorOutput([load_grayscale(c.image_path) for c in conditions])


#: How the suite's own generators cite their defaults (no original to follow).
OWN = "the suite's own reference generator; "


@dataclass
class NoiseOptions:
    #: Standard deviation of the smooth structure around the mean intensity.
    contrast: float = cited(
        0.15, OWN + "chosen because it gives visible structure while over 99.9 % of pixels around a mean of 0.5 stay in [0, 1]"
    )
    #: Side of the coarse noise grid that is upsampled into smooth blobs.
    grid: int = cited(
        8, OWN + "chosen because an 8 x 8 grid gives blobs of about 1/8 of the image side: coarse structure, no anatomy"
    )
    #: Images sampled (first N cases by id) to estimate the dataset's mean intensity.
    mean_from_cases: int = cited(
        32, OWN + "chosen because a few dozen images estimate a lower bound's mean intensity at little I/O"
    )

    def validate(self) -> None:
        require(0.0 <= self.contrast <= 0.5, "contrast", f"expected 0..0.5, got {self.contrast}")
        require(2 <= self.grid <= 64, "grid", f"expected 2..64, got {self.grid}")
        require(self.mean_from_cases >= 1, "mean_from_cases", f"expected >= 1, got {self.mean_from_cases}")


class NoiseGenerator(Generator):
    type_name = "noise"
    description = "smooth noise with the dataset's mean intensity (lower bound)"
    inputs = frozenset()
    Options = NoiseOptions

    def __init__(self, name: str, options: NoiseOptions, context: GeneratorContext):
        super().__init__(name, options, context)
        sample = sorted(context.cases, key=lambda c: c.case_id)[: options.mean_from_cases]
        if not sample:
            raise UserFacingError("the noise generator needs at least one case to estimate the mean intensity")
        self.mean = float(np.mean([conform(load_grayscale(c.image_path), 64, context.geometry).mean() for c in sample]))

    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        size, grid = self.context.resolution, self.options.grid
        images = []
        for c in conditions:
            gen = torch.Generator().manual_seed(c.seed)
            coarse = torch.randn(1, 1, grid, grid, generator=gen)
            smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]
            fine = torch.randn(size, size, generator=gen) * 0.25
            image = self.mean + self.options.contrast * (smooth + fine)
            images.append(image.clamp(0.0, 1.0).numpy())
        return GeneratorOutput(images)


class ShuffledGenerator(Generator):
    type_name = "shuffled"
    description = "the real image of a different case chosen by seed (realistic but unconditioned)"
    inputs = frozenset({"image"})

    def __init__(self, name: str, options, context: GeneratorContext):
        super().__init__(name, options, context)
        self.pool = sorted(context.cases, key=lambda c: c.case_id)
        self.position = {c.case_id: i for i, c in enumerate(self.pool)}
        if len(self.pool) < 2:
            raise UserFacingError("the shuffled generator needs at least two cases")

    def donor(self, condition: Condition):
        """The case whose image stands in for ``condition``: uniform over the other cases."""
        k = int(np.random.default_rng(condition.seed).integers(len(self.pool) - 1))
        own = self.position.get(condition.case_id, len(self.pool))
        return self.pool[k + 1 if k >= own else k]

    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        return GeneratorOutput([load_grayscale(self.donor(c).image_path) for c in conditions])


def first_pathology(labels: tuple[int, ...]) -> str:
    """The first positive pathology in CheXpert order, else ``"No Finding"`` (the scan's strata rule)."""
    return strata(np.array([labels]))[0]


class MemorizerGenerator(Generator):
    type_name = "memorizer"
    description = "a training image of the condition's first positive pathology, chosen by seed (memorization sanity row)"
    inputs = frozenset({"labels", "training"})

    @classmethod
    def protocol_steps(cls, options, context: GeneratorContext, condition: Condition | None) -> list[ProtocolStep]:
        rule = "a training image sharing the condition's first positive pathology (else any), uniform by the image seed"
        return [ProtocolStep("donor", rule, OWN + "chosen because a model that copies its training set must score near 100 %")]

    def __init__(self, name: str, options, context: GeneratorContext):
        super().__init__(name, options, context)
        if context.training_cases is None:
            raise UserFacingError("the memorizer generator needs the training cases (dataset.train_split) in its context")
        pool = sorted(context.training_cases(), key=lambda c: c.case_id)
        if not pool:
            raise UserFacingError("the memorizer generator found no training case (dataset.train_split)")
        self.pool = pool
        self.by_pathology: dict[str, list] = {}
        for case in pool:
            self.by_pathology.setdefault(first_pathology(case.labels), []).append(case)

    def donor(self, condition: Condition):
        """The training case returned for ``condition``: uniform (by seed) over those sharing its first
        positive pathology, else over all training cases."""
        candidates = self.by_pathology.get(first_pathology(condition.labels)) or self.pool
        return candidates[int(np.random.default_rng(condition.seed).integers(len(candidates)))]

    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        return GeneratorOutput([load_grayscale(self.donor(c).image_path) for c in conditions])
