"""``phantom``: a weight-free reference generator for the synthetic demo.

It paints a new chest-radiograph phantom that follows the condition's anatomy label map
(lungs, heart, aortic knob) exactly and draws each positive finding inside its box, with a
texture that differs from the demo dataset's (coarser grain, flatter contrast, rib
outlines instead of solid bands). Expected ranking on the demo: Dice close to ``real``
(it follows the anatomy), FID clearly worse than ``real`` (other texture), findings
recognisable by a classifier trained on the dataset.

It only makes sense on the synthetic demo, whose anatomy maps and findings come from the
same renderer; on real MIMIC-CXR it is refused. A positive finding without a box of its
label gets one placed where it belongs on the map; positive labels the renderer cannot
draw (Enlarged Cardiomediastinum, Fracture, Lung Lesion, Pleural Other, Support Devices —
never positive in the demo set) are not drawn. The output has the anatomy map's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from xreal_bench.demo.phantoms import DRAWN_FINDINGS, STYLES, render_from_anatomy
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, cited
from xreal_bench.types import Condition
from xreal_bench.validation import require


@dataclass
class PhantomOptions:
    #: Texture: "alternate" (coarse grain, flat contrast, rib outlines; default) or
    #: "dataset" (the demo dataset's own texture: an upper bound on realism).
    style: Literal["alternate", "dataset"] = cited(
        "alternate",
        "the suite's own demo generator; chosen because a texture other than the data set's gives the expected ranking (Dice near real, FID clearly worse)",
    )
    #: Multiplies the style's film-grain strength (0 = no grain).
    noise: float = cited(
        1.0, "the suite's own demo generator; chosen because 1.0 is the style's own film-grain strength, unscaled"
    )

    def validate(self) -> None:
        require(0.0 <= self.noise <= 5.0, "noise", f"expected 0..5, got {self.noise}")


class PhantomGenerator(Generator):
    type_name = "phantom"
    description = "renders a phantom from the anatomy map and pathology boxes (synthetic demo only; no weights)"
    inputs = frozenset({"anatomy", "pathology", "labels"})
    Options = PhantomOptions

    def __init__(self, name: str, options: PhantomOptions, context: GeneratorContext):
        super().__init__(name, options, context)
        if context.dataset_kind != "synthetic":
            raise UserFacingError(
                f"generator {name!r} (type 'phantom') only works on the synthetic demo dataset, but "
                f"[dataset].kind is {context.dataset_kind!r}: it paints phantoms from the demo's own "
                "renderer, so on real radiographs its scores would mean nothing. Disable it "
                f'([generators.{name}] enabled = false) or use [dataset].kind = "synthetic".'
            )
        self.style = STYLES[options.style]

    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        return GeneratorOutput([self.render(c) for c in conditions])

    def render(self, condition: Condition) -> np.ndarray:
        """One image at the anatomy map's resolution, seeded by ``condition.seed`` alone."""
        if condition.anatomy is None:
            raise UserFacingError(
                f"case {condition.case_id}: the phantom generator needs an anatomy label map, but the "
                'condition has none; set [conditioning].anatomy = "folder" (the demo\'s anatomy/ maps)'
            )
        findings = [name for name in condition.positives if name in DRAWN_FINDINGS]
        rng = np.random.default_rng(condition.seed)
        try:
            return render_from_anatomy(condition.anatomy, findings, condition.boxes, rng, self.style, self.options.noise)
        except ValueError as exc:
            raise UserFacingError(f"case {condition.case_id}: cannot render a phantom ({exc})") from None
