"""Conditioning: turns each Case into the Conditions generators receive (labels, prompt, report
text, anatomy label map, pathology boxes and mask). :func:`prepare_case_facts` prepares every
case once before generation; :func:`build_condition` is the pure per-sample step."""

from xreal_bench.conditioning.anatomy import AnatomyMaps, Segmenter, masks_to_label_map, read_label_map
from xreal_bench.conditioning.builder import ConditionSettings, build_condition
from xreal_bench.conditioning.prepare import (
    ConditioningError,
    PreparedCases,
    anatomy_maps,
    available_inputs,
    conditioning_rng,
    prepare_case_facts,
)

__all__ = [
    "AnatomyMaps",
    "ConditionSettings",
    "ConditioningError",
    "PreparedCases",
    "Segmenter",
    "anatomy_maps",
    "available_inputs",
    "build_condition",
    "conditioning_rng",
    "masks_to_label_map",
    "prepare_case_facts",
    "read_label_map",
]
