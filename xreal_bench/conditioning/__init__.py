"""Conditioning: turns each Case into the Conditions generators receive (labels, prompt,
report text, anatomy label map, pathology boxes and mask). Entry point: :class:`ConditionBuilder`."""

from xreal_bench.conditioning.anatomy import Segmenter, masks_to_label_map, read_label_map
from xreal_bench.conditioning.builder import ConditionBuilder, ConditioningError, conditioning_rng

__all__ = ["ConditionBuilder", "ConditioningError", "Segmenter", "conditioning_rng", "masks_to_label_map", "read_label_map"]
