"""The one door through which the suite reads pickled weights: tensors only, no code from the file.

1. ``torch.load(weights_only=True)`` — torch's restricted unpickler — is tried first.
2. Files torch refuses (Lightning checkpoints with hyper-parameter objects, whole pickled
   ``nn.Module`` files such as torchxrayvision's DenseNet releases) are read with
   :class:`TensorOnlyUnpickler`: tensors and plain containers are rebuilt; every other global
   the pickle names becomes an inert :class:`Placeholder` type that is never imported or
   called. A pickled module thus becomes a tree of placeholders whose state holds its
   ``_parameters``, ``_buffers`` and ``_modules``; :func:`module_state_dict` walks that tree
   into a flat state dict. TorchScript archives are code and are refused.

Third-party model classes then receive these state dicts, never a file path.
"""

from __future__ import annotations

import _compat_pickle
import collections
import logging
import pickle
import types
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xreal_bench.weights import WeightsLoadError

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
LOG = logging.getLogger(__name__)

__all__ = ["WeightsLoadError", "module_state_dict", "read_checkpoint", "state_dict_of"]


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
        # Protocol-2 pickles (torch.save's default) name builtins the Python 2 way (``__builtin__.set``).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in ALLOWED_GLOBALS:
            return collections.OrderedDict if name == "OrderedDict" else super().find_class(module, name)
        return type(f"Placeholder[{module}.{name}]", (Placeholder,), {"source": f"{module}.{name}"})


def _tensor_only_pickle_module() -> types.ModuleType:
    module = types.ModuleType("tensor_only_pickle")
    module.Unpickler = TensorOnlyUnpickler  # type: ignore[attr-defined]
    module.load = lambda f, **kw: TensorOnlyUnpickler(f, **kw).load()  # type: ignore[attr-defined]
    return module


def _refuse_torchscript(path: Path) -> None:
    """``torch.load`` hands TorchScript archives to ``torch.jit.load`` (code); refuse them first."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.split("/", 1)[-1] == "constants.pkl" or "/code/" in n for n in names):
        raise WeightsLoadError(f"{path} is a TorchScript archive (it contains code); only tensor checkpoints are loaded")


def read_checkpoint(path: Path, log: logging.Logger = LOG) -> Any:
    """Load a torch checkpoint onto the CPU without executing code from it."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.info("%s: weights_only load refused (%s); reading tensors with the tensor-only unpickler", path.name, first_line)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsLoadError(
            f"cannot read checkpoint {path}: {exc}\n  the file may be truncated or not a torch checkpoint"
        ) from None
    _refuse_torchscript(path)
    try:
        with warnings.catch_warnings():  # legacy module pickles: "Couldn't retrieve source code for container ..."
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tensor_only_pickle_module())
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is unusable
        raise WeightsLoadError(f"cannot read checkpoint {path}: {exc}") from None


def state_dict_of(checkpoint: Any, path: Path, key: str = "state_dict") -> dict[str, torch.Tensor]:
    """The tensor dict under ``key`` (``state_dict`` for CompVis/Lightning, ``model`` for Cheff SR), or the
    checkpoint itself when it is already a flat tensor dict."""
    if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
        state = checkpoint[key]
    elif isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        found = sorted(map(str, checkpoint))[:10] if isinstance(checkpoint, dict) else describe(checkpoint)
        raise WeightsLoadError(f"{path}: expected a checkpoint with a {key!r} tensor dict, found {found}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsLoadError(f"{path}: {key!r} holds non-tensor entries: {', '.join(map(str, bad[:10]))}")
    return dict(state)


def describe(obj: Any) -> str:
    """What an unpickled object is, for messages (a placeholder names the class the file asked for)."""
    return f"an object of {obj.source}" if isinstance(obj, Placeholder) else type(obj).__name__


def _module_fields(node: Any, path: Path, where: str) -> tuple[Mapping, Mapping, Mapping, frozenset]:
    """``_parameters``, ``_buffers``, ``_modules`` and the non-persistent buffer names of a pickled module."""
    state: Any = getattr(node, "state", None) if isinstance(node, Placeholder) else None
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
        state = state[0]
    if not isinstance(state, dict):
        state = {}
    params, buffers, children = (state.get(k) for k in ("_parameters", "_buffers", "_modules"))
    if not (isinstance(params, Mapping) and isinstance(buffers, Mapping) and isinstance(children, Mapping)):
        raise WeightsLoadError(f"{path}: {where} is not a pickled torch module (found {describe(node)})")
    transient = state.get("_non_persistent_buffers_set", set())  # absent in pickles from torch < 1.6
    if not isinstance(transient, set | frozenset) or not all(isinstance(n, str) for n in transient):
        raise WeightsLoadError(f"{path}: {where} has an invalid non-persistent buffer list ({describe(transient)})")
    return params, buffers, children, frozenset(transient)


def module_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The ``{dotted.name: tensor}`` state dict of a whole pickled ``nn.Module`` read by :func:`read_checkpoint`.

    Like ``nn.Module.state_dict()``: parameters and persistent buffers, ``None`` entries skipped,
    children by name. Anything that is not a module tree of tensors is refused with
    :class:`WeightsLoadError`; no class from the file is imported or called.
    """
    out: dict[str, torch.Tensor] = {}

    def walk(node: Any, prefix: str, ancestors: tuple[int, ...]) -> None:
        where = f"module {prefix[:-1]!r}" if prefix else "the top-level object"
        if id(node) in ancestors:
            raise WeightsLoadError(f"{path}: {where} contains itself")
        params, buffers, children, transient = _module_fields(node, path, where)
        entries = [*params.items(), *((k, v) for k, v in buffers.items() if k not in transient)]
        for name, value in entries:
            if value is None:
                continue
            if not isinstance(name, str) or not isinstance(value, torch.Tensor):
                raise WeightsLoadError(f"{path}: {prefix}{name} is {describe(value)}, not a tensor")
            out[prefix + name] = value.detach()
        for name, child in children.items():
            if child is not None:
                walk(child, f"{prefix}{name}.", (*ancestors, id(node)))

    walk(obj, "", ())
    if not out:
        raise WeightsLoadError(f"{path}: the pickled module holds no tensors")
    return out
