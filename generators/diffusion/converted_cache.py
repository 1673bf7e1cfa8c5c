"""Converted weights cached as safetensors next to the original checkpoint.

For ``saved_models/backbone.pth`` the cache is the folder ``saved_models/backbone.pth.converted/``:
``index.json`` (which key groups the original holds, its schedule/scale buffers) and one
``<component>.safetensors`` per converted component, each stamped with the original's sha256,
the converter version, the diffusers version and the component's architecture config. A stamp
that no longer matches — the original was replaced, the architecture or the code changed —
means the component is converted again from the original. Conversion (and so the reading of
the multi-GB pickle) therefore happens once per file. If the folder cannot be written the
conversion is redone on every start, with a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import diffusers
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

from xreal_bench.atomic import write_atomic
from xreal_bench.generators.diffusion.conversion import (
    CONVERTER_VERSION,
    LDM_PREFIXES,
    Partition,
    build_module,
    check_schedule,
    component_config,
    convert_component,
    partition,
)
from xreal_bench.safe_load import read_checkpoint, state_dict_of
from xreal_bench.weights import cached_sha256


class ConvertedCheckpoint:
    """One original checkpoint file of ``kind`` (``ldm``, ``autoencoder``, ``controlnet``) and its cache."""

    def __init__(self, path: Path, kind: str, original: dict[str, Any], log: logging.Logger):
        self.path, self.kind, self.original, self.log = Path(path), kind, original, log
        self.cache_dir = self.path.with_name(self.path.name + ".converted")
        self._sha256: str | None = None
        self._part: Partition | None = None
        self._index: dict[str, Any] | None = None
        self._cache_writable = True

    # ------------------------------------------------------------------ identity

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = cached_sha256(self.path)
        return self._sha256

    def stamp(self) -> dict[str, str]:
        return {"source_sha256": self.sha256, "converter": CONVERTER_VERSION, "diffusers": diffusers.__version__}

    # ------------------------------------------------------------------ index

    @property
    def index(self) -> dict[str, Any]:
        """Key groups of the original (read from the cache, else from the original itself)."""
        if self._index is None:
            self._index = self._read_json(self.cache_dir / "index.json")
            if self._index is None or {k: self._index.get(k) for k in self.stamp()} != self.stamp():
                part = self.partition()
                self._index = {
                    **self.stamp(),
                    "groups": {g: len(keys) for g, keys in part.groups.items()},
                    "scale_factor": part.scale_factor,
                }
                self._write(self.cache_dir / "index.json", lambda f: f.write(json.dumps(self._index, indent=1).encode()))
        return self._index

    def has(self, component: str) -> bool:
        return self.index["groups"].get(component, 0) > 0

    @property
    def scale_factor(self) -> float | None:
        """The ``scale_factor`` buffer stored in the checkpoint, if any."""
        return self.index.get("scale_factor")

    def describe(self, component: str) -> str:
        prefix = LDM_PREFIXES.get(component, "")
        keys = "bare autoencoder keys" if self.kind == "autoencoder" and component == "vae" else f"{prefix}*"
        return f"{self.path.name} ({keys}, {self.index['groups'].get(component, 0)} tensors)"

    def unused_groups(self, used: set[str]) -> dict[str, int]:
        return {g: n for g, n in self.index["groups"].items() if g not in used and g != "training"}

    # ------------------------------------------------------------------ components

    def load(self, component: str) -> nn.Module:
        """The component as a filled diffusers module (from the cache, else converted and cached)."""
        config = component_config(component, self.original)
        cached = self.cache_dir / f"{component}.safetensors"
        state = self._read_cached(cached, config)
        if state is None:
            self.log.info("converting %s of %s to diffusers (once; cached in %s)", component, self.path, self.cache_dir)
            state = convert_component(component, self.partition(), self.original, str(self.path))
            meta = {**self.stamp(), "config": json.dumps(config, sort_keys=True)}
            self._write(cached, lambda f: f.write(save(state, metadata=meta)))
        return build_module(component, config, state, str(self.path))

    def partition(self) -> Partition:
        if self._part is None:
            self.log.info("reading %s", self.path)
            state = state_dict_of(read_checkpoint(self.path, self.log), self.path)
            self._part = partition(state, self.kind, str(self.path))
            if self.kind != "autoencoder":
                check_schedule(self._part, self.original, str(self.path))
        return self._part

    def release(self) -> None:
        """Drop the original's tensors once every needed component is built."""
        self._part = None

    # ------------------------------------------------------------------ files

    def _read_cached(self, path: Path, config: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception:  # noqa: BLE001 - an unreadable cache entry is simply rebuilt
            return None
        expected = {**self.stamp(), "config": json.dumps(config, sort_keys=True)}
        if {k: meta.get(k) for k in expected} != expected:
            self.log.info("cached conversion %s is stale (original, architecture or converter changed)", path)
            return None
        return load_file(str(path))

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _write(self, path: Path, write) -> None:
        if not self._cache_writable:
            return
        try:
            write_atomic(path, write)
        except OSError as exc:
            self._cache_writable = False
            self.log.warning("cannot cache converted weights in %s (%s): converting again on every start", path.parent, exc)
