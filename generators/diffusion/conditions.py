"""Turning :class:`~xreal_bench.types.Condition` fields into model inputs, recording every
adjustment as a per-sample note (logged, and returned in the adapter's ``GeneratorOutput.notes``).

- Anatomy label maps (0..4) of the wrong size go through :func:`xreal_bench.imaging.resize_label_map`
  (centre crop + nearest neighbour — the project's one rule); values outside 0..4 are an error.
- Pathology regions at latent resolution: the condition's boxes, clipped to the image (a box
  entirely outside is dropped), rasterised with :meth:`Box.pixels`; without boxes, the
  pathology mask through ``resize_label_map``.
- Prompts: a named rule (:mod:`xreal_bench.generators.prompts`) applied to each condition, a note
  whenever the rule falls back to a later field or the fallback text, and the manifest record of
  the exact prompt with the tokens truncation cut (:func:`prompt_inputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.prompts import Prompt, build_prompt, prompt_rule
from xreal_bench.imaging import Geometry, conform, load_grayscale, resize_label_map
from xreal_bench.types import Condition

ANATOMY_MAX_LABEL = 4


@dataclass
class Notes:
    """Per-sample notes of one batch."""

    conditions: Sequence[Condition]
    log: logging.Logger
    model: str
    items: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.items = [[] for _ in self.conditions]

    def add(self, index: int, text: str) -> None:
        self.items[index].append(text)
        c = self.conditions[index]
        self.log.info("%s: %s/%d: %s", self.model, c.case_id, c.sample_index, text)

    def as_tuples(self) -> list[tuple[str, ...]]:
        return [tuple(n) for n in self.items]


def anatomy_batch(conditions: Sequence[Condition], size: int, notes: Notes) -> torch.Tensor:
    """``(B, 1, size, size)`` float label maps (0..4); wrong sizes resized by the one rule."""
    maps = []
    for i, c in enumerate(conditions):
        if c.anatomy is None:
            raise UserFacingError(
                f"{notes.model}: case {c.case_id} has no anatomy label map (conditioning.anatomy must not be 'none')"
            )
        label_map = np.asarray(c.anatomy)
        if label_map.ndim != 2:
            raise UserFacingError(f"{notes.model}: case {c.case_id}: anatomy map must be 2-D, got shape {label_map.shape}")
        if label_map.max(initial=0) > ANATOMY_MAX_LABEL or label_map.min(initial=0) < 0:
            values = sorted(np.unique(label_map).tolist())[:8]
            raise UserFacingError(
                f"{notes.model}: case {c.case_id}: anatomy map values {values} outside 0..{ANATOMY_MAX_LABEL} "
                f"(maps stored x64, as XReal's example PNGs, must be divided by 64 first)"
            )
        if label_map.shape != (size, size):
            notes.add(i, f"anatomy map {label_map.shape[0]}x{label_map.shape[1]} resized to {size}x{size} (centre crop, nearest)")
            label_map = resize_label_map(label_map, size)
        maps.append(torch.from_numpy(label_map.astype(np.float32)))
    return torch.stack(maps)[:, None]


def real_image_batch(conditions: Sequence[Condition], size: int, geometry: Geometry) -> torch.Tensor:
    """``(B, 1, size, size)`` real images in [0, 1], decoded, stretched and squared like every real image."""
    return torch.stack([torch.from_numpy(conform(load_grayscale(c.image_path), size, geometry)) for c in conditions])[:, None]


def pathology_region(condition: Condition, index: int, size: int, notes: Notes) -> torch.Tensor | None:
    """``(size, size)`` float mask (1 = where the pathology goes), or None when there is no region."""
    if condition.boxes:
        mask = torch.zeros(size, size)
        for box in condition.boxes:
            clipped = box.clipped()
            where = f"box {box.label!r} ({box.x0:.3f}, {box.y0:.3f}, {box.x1:.3f}, {box.y1:.3f})"
            if clipped.x1 <= clipped.x0 or clipped.y1 <= clipped.y0:
                notes.add(index, f"{where} lies outside the image: ignored")
                continue
            if clipped != box:
                notes.add(
                    index,
                    f"{where} clipped to the image ({clipped.x0:.3f}, {clipped.y0:.3f}, {clipped.x1:.3f}, {clipped.y1:.3f})",
                )
            x0, y0, x1, y1 = clipped.pixels(size)
            mask[y0:y1, x0:x1] = 1.0
        return mask if mask.any() else None
    if condition.pathology_mask is not None:
        region = np.asarray(condition.pathology_mask).astype(bool)
        if region.shape != (size, size):
            notes.add(
                index, f"pathology mask {region.shape[0]}x{region.shape[1]} resized to {size}x{size} (centre crop, nearest)"
            )
            region = resize_label_map(region, size)
        return torch.from_numpy(region.astype(np.float32)) if region.any() else None
    return None


def rule_prompts(rule_name: str, conditions: Sequence[Condition], notes: Notes, *, fallback: str) -> list[Prompt]:
    """Each condition's prompt by the named rule; every fallback the rule takes is noted with the text used."""
    rule = prompt_rule(rule_name)
    prompts = []
    for i, c in enumerate(conditions):
        prompt = build_prompt(rule, c, fallback=fallback)
        for note in prompt.notes:
            notes.add(i, f"{note}: {prompt.text!r}")
        prompts.append(prompt)
    return prompts


def prompt_inputs(prompt: Prompt, tokens_cut: int) -> dict[str, object]:
    """The manifest record of one image's prompt: :meth:`Prompt.record` and the tokens truncation cut."""
    return {**prompt.record(), "tokens_truncated": tokens_cut}
