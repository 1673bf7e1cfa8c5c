"""Reading the released pickles (CompVis / Lightning / lllyasviel checkpoints) safely.

1. ``torch.load(weights_only=True)`` — torch's restricted unpickler — is tried first.
2. Lightning checkpoints often also pickle objects that torch does not allow-list (hyper-parameter
   containers, callbacks' state, paths, numpy scalars). Such a file is then read with
   :class:`TensorOnlyUnpickler`: tensors and plain containers are rebuilt; every other global
   the pickle names becomes an inert placeholder that is never imported or called. No code
   from the file runs, so no "full unpickling" is ever needed and none is done — whatever
   the weights manager knows about the file's hash.
"""

from __future__ import annotations

import collections
import logging
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from xreal_bench.errors import UserFacingError

#: Globals a tensor pickle legitimately needs (everything else becomes a placeholder).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch", "Tensor"),
        ("torch.nn.parameter", "Parameter"),
        ("torch", "Size"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        *(("torch", name) for name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool")),
    }
)


class Placeholder:
    """Stands in for an object of a class that was not loaded; keeps its arguments and state."""

    source: str = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<not loaded: {self.source}>"


class TensorOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; other globals become :class:`Placeholder` types."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return collections.OrderedDict if name == "OrderedDict" else super().find_class(module, name)
        return type(f"Placeholder[{module}.{name}]", (Placeholder,), {"source": f"{module}.{name}"})


def _tensor_only_pickle_module() -> types.ModuleType:
    module = types.ModuleType("tensor_only_pickle")
    module.Unpickler = TensorOnlyUnpickler  # type: ignore[attr-defined]
    module.load = lambda f, **kw: TensorOnlyUnpickler(f, **kw).load()  # type: ignore[attr-defined]
    module.__name__ = "tensor_only_pickle"
    return module


def read_checkpoint(path: Path, log: logging.Logger) -> Any:
    """Load a torch checkpoint onto the CPU without executing code from it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.info("%s: weights_only load refused (%s); reading tensors with the tensor-only unpickler", path.name, first_line)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserFacingError(
            f"cannot read checkpoint {path}: {exc}\n  the file may be truncated or not a torch checkpoint"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tensor_only_pickle_module())
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is unusable
        raise UserFacingError(f"cannot read checkpoint {path}: {exc}") from None


def state_dict_of(checkpoint: Any, path: Path, key: str = "state_dict") -> dict[str, torch.Tensor]:
    """The tensor dict under ``key`` (``state_dict`` for CompVis/Lightning, ``model`` for Cheff SR), or the
    checkpoint itself when it is already a flat tensor dict."""
    if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
        state = checkpoint[key]
    elif isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise UserFacingError(f"{path}: expected a checkpoint with a {key!r} tensor dict, found {found}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserFacingError(f"{path}: {key!r} holds non-tensor entries: {', '.join(map(str, bad[:10]))}")
    return dict(state)
