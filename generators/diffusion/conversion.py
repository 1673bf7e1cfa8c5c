"""CompVis / lllyasviel checkpoint keys -> diffusers modules, with full key accounting.

The key mapping is diffusers' own (``diffusers.loaders.single_file_utils``:
``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``, ``convert_controlnet_checkpoint``;
``convert_from_ckpt.convert_ldm_bert_checkpoint`` for the BERT-style text encoder), fed with the
architecture from :mod:`~xreal_bench.generators.diffusion.original_config`. What they do not cover is
written here once:

- the ControlNet config: diffusers' ``create_controlnet_diffusers_config_from_ldm`` is not usable
  (it calls the UNet config builder without its checkpoint argument), so the ControlNet config is
  the UNet's plus the hint channels; XReal's hint encoder downsamples 4x, not 8x (its last
  stride-2 convolution has stride 1), which :func:`build_module` applies to diffusers'
  ``ControlNetConditioningEmbedding`` — the number of stride-2 convolutions is
  log2(image size / latent size);
- ``convert_ldm_bert_checkpoint`` reads attributes of the original ``BERTEmbedder`` module; a
  read-only attribute view over the state dict (:class:`StateTree`) stands in for it.

Accounting. A checkpoint is partitioned into key groups (UNet ``model.diffusion_model.``, EMA
``model_ema.``, text encoder ``cond_stage_model.``, autoencoder ``first_stage_model.`` or the bare
autoencoder keys, ControlNet ``control_model.``, the LDM's schedule buffers, training-only
``loss.``). A key in no group is an error. Converting a group must consume every key of it
(traced by tensor identity), and the resulting module must be completely filled
(``load_state_dict(strict=True)``); either failure is an error naming the keys.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_controlnet_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)
from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import (
    LDMBertConfig,
    LDMBertModel,
)
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import (
    convert_ldm_bert_checkpoint,
)
from torch import nn

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.schedules import ldm_linear_alphas_cumprod

#: Bumped whenever the conversion output changes (invalidates cached conversions).
CONVERTER_VERSION = "1"

#: Key prefixes of a latent-diffusion checkpoint, by component.
LDM_PREFIXES: dict[str, str] = {
    "unet": "model.diffusion_model.",
    "unet_ema": "model_ema.",
    "text_encoder": "cond_stage_model.",
    "vae": "first_stage_model.",
    "controlnet": "control_model.",
    "training": "loss.",
}
#: Prefixes of a bare autoencoder checkpoint (``ldm_ae.pth``, the anatomy controller, Cheff's AE).
AUTOENCODER_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
#: Prefixes of a ControlNet saved without the ``control_model.`` prefix.
BARE_CONTROLNET_PREFIXES = (
    "time_embed.",
    "input_blocks.",
    "zero_convs.",
    "input_hint_block.",
    "middle_block.",
    "middle_block_out.",
)
#: Buffers of the LDM's DDPM: the noise schedule and quantities derived from it.
SCHEDULE_BUFFERS = frozenset(
    {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "lvlb_weights",
        "logvar",
        "cond_ids",
    }
)
#: EMA bookkeeping scalars (not weights).
EMA_BOOKKEEPING = frozenset({"model_ema.decay", "model_ema.num_updates"})


class ConversionError(UserFacingError):
    """A checkpoint does not match the architecture it is converted to."""


def _key_list(keys: Any, limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ----------------------------------------------------------------------------- configs


def unet_config(original: dict[str, Any]) -> dict[str, Any]:
    """diffusers ``UNet2DConditionModel`` kwargs for the LDM UNet (``create_unet_diffusers_config_from_ldm``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its image_size argument is deprecated; only sample_size depends on it
        config = create_unet_diffusers_config_from_ldm(original, {}, image_size=oc.image_size(original))
    return config


def vae_config(original: dict[str, Any]) -> dict[str, Any]:
    """diffusers ``AutoencoderKL`` kwargs for the first-stage autoencoder (``create_vae_diffusers_config_from_ldm``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_vae_diffusers_config_from_ldm(
            original, {}, image_size=oc.image_size(original), scaling_factor=oc.scale_factor(original)
        )


def controlnet_config(original: dict[str, Any]) -> dict[str, Any]:
    """diffusers ``ControlNetModel`` kwargs: the UNet's architecture plus the hint channels."""
    unet = unet_config(original)
    control = original["model"]["params"]["control_stage_config"]["params"]
    shared = (
        "in_channels",
        "down_block_types",
        "block_out_channels",
        "layers_per_block",
        "cross_attention_dim",
        "attention_head_dim",
        "use_linear_projection",
        "transformer_layers_per_block",
    )
    return {
        **{k: unet[k] for k in shared},
        "conditioning_channels": int(control["hint_channels"]),
        "conditioning_embedding_out_channels": [16, 32, 96, 256],
    }


def hint_downsample(original: dict[str, Any]) -> int:
    """How much the ControlNet's hint encoder must downsample: image side / latent side."""
    return oc.image_size(original) // oc.latent_size(original)


def text_encoder_config(original: dict[str, Any]) -> dict[str, Any]:
    """``LDMBertConfig`` kwargs for the LDM ``BERTEmbedder`` (x-transformers encoder: 8 heads of 64, FF 4x)."""
    p = oc.bert_params(original)
    return {
        "vocab_size": int(p["vocab_size"]),
        "max_position_embeddings": int(p["max_seq_len"]),
        "encoder_layers": int(p["n_layer"]),
        "d_model": int(p["n_embed"]),
        "encoder_ffn_dim": 4 * int(p["n_embed"]),
        "encoder_attention_heads": 8,
        "head_dim": 64,
    }


def component_config(name: str, original: dict[str, Any]) -> dict[str, Any]:
    """The stored config of a component: diffusers kwargs plus what :func:`build_module` needs."""
    if name in ("unet", "unet_ema"):
        return unet_config(original)
    if name == "vae":
        return vae_config(original)
    if name == "controlnet":
        return {**controlnet_config(original), "_hint_downsample": hint_downsample(original)}
    if name == "text_encoder":
        return text_encoder_config(original)
    raise KeyError(name)


# ----------------------------------------------------------------------------- partition


@dataclass
class Partition:
    """A checkpoint's keys sorted into groups (group -> {full key: tensor})."""

    groups: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    schedule: dict[str, torch.Tensor] = field(default_factory=dict)
    scale_factor: float | None = None

    def has(self, component: str) -> bool:
        return bool(self.groups.get(component))


def partition(state: dict[str, torch.Tensor], kind: str, source: str) -> Partition:
    """Sort the keys of a checkpoint of ``kind`` (``ldm``, ``autoencoder``, ``controlnet``) into groups."""
    part = Partition()
    unknown = []
    bare_control = kind == "controlnet" and not any(k.startswith(LDM_PREFIXES["controlnet"]) for k in state)
    for key, tensor in state.items():
        if key in SCHEDULE_BUFFERS:
            part.schedule[key] = tensor
            continue
        if key == "scale_factor":
            part.scale_factor = float(tensor)
            continue
        group = next((g for g, p in LDM_PREFIXES.items() if key.startswith(p)), None)
        if group is None and kind == "autoencoder" and key.startswith(AUTOENCODER_PREFIXES):
            group = "vae"
        if group is None and bare_control and key.startswith(BARE_CONTROLNET_PREFIXES):
            group = "controlnet"
        if group is None:
            unknown.append(key)
            continue
        part.groups.setdefault(group, {})[key] = tensor
    if unknown:
        raise ConversionError(
            f"{source}: {len(unknown)} checkpoint key(s) belong to no known part of a {kind} checkpoint: "
            f"{_key_list(unknown)}\n  is this the right file for this artifact?"
        )
    return part


def check_schedule(part: Partition, original: dict[str, Any], source: str) -> None:
    """The checkpoint's stored ``alphas_cumprod`` (if any) must be the configured schedule."""
    stored = part.schedule.get("alphas_cumprod")
    if stored is None:
        return
    expected = ldm_linear_alphas_cumprod(*oc.schedule(original))
    if stored.shape != expected.shape or not torch.allclose(stored.float(), expected, rtol=1e-5, atol=1e-7):
        raise ConversionError(
            f"{source}: the checkpoint's noise schedule (alphas_cumprod, {tuple(stored.shape)}) differs from the "
            f"configured linear schedule {oc.schedule(original)}; set linear_start / linear_end / timesteps in "
            f"original_config to the values it was trained with"
        )


# ----------------------------------------------------------------------------- conversion


StateDict = dict[str, torch.Tensor]


def traced(convert: Callable[[StateDict], dict[str, Any]], source: StateDict) -> tuple[StateDict, set[str]]:
    """Run a key-mapping converter; return its output and the source keys whose tensors it used."""
    source = {k: t if t._base is None else t.clone() for k, t in source.items()}  # views would hide their origin
    by_id = {id(t): k for k, t in source.items()}
    out = convert(source)
    consumed, empty = set(), []
    for key, value in out.items():
        if value is None:
            empty.append(key)
            continue
        base = value if value._base is None else value._base
        if id(base) in by_id:
            consumed.add(by_id[id(base)])
    if empty:
        raise ConversionError(f"the checkpoint lacks the tensors for: {_key_list(empty)}")
    return out, consumed


class StateTree:
    """Read-only attribute / index view of a flat state dict, recording the keys it hands out.

    ``tree.transformer.attn_layers.layers[0][1].to_q.weight`` returns the tensor stored under
    ``<prefix>transformer.attn_layers.layers.0.1.to_q.weight`` (as a frozen ``nn.Parameter``);
    a missing ``bias`` is ``None``, as on a module without one.
    """

    def __init__(self, state: dict[str, torch.Tensor], prefix: str, accessed: set[str]):
        self._state, self._prefix, self._accessed = state, prefix, accessed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = self._prefix + name
        if key in self._state:
            self._accessed.add(key)
            return nn.Parameter(self._state[key], requires_grad=False)
        if any(k.startswith(key + ".") for k in self._state):
            return StateTree(self._state, key + ".", self._accessed)
        if name == "bias":
            return None
        raise ConversionError(f"the checkpoint lacks {key!r}")

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(index.start or 0, index.stop, index.step or 1)]
        return getattr(self, str(index))


def ema_key(unet_key: str) -> str:
    """LitEma's name for a UNet weight: ``model.diffusion_model.a.0.w`` -> ``model_ema.diffusion_modela0w``."""
    return "model_ema." + "".join(unet_key.split(".")[1:])


def convert_component(name: str, part: Partition, original: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Convert one component of a partitioned checkpoint with diffusers' converters; every key must be used."""
    config = component_config(name, original)
    tensors = part.groups.get(name, {})
    try:
        if name == "unet":
            out, consumed = traced(lambda s: convert_ldm_unet_checkpoint(s, config), tensors)
        elif name == "unet_ema":
            # LitEma stores each UNet weight under its dot-less name; hand diffusers the dotted names backed by the EMA tensors
            names = part.groups.get("unet", {})
            missing = [ema_key(k) for k in names if ema_key(k) not in tensors]
            if not names or missing:
                raise ConversionError(
                    f"EMA weights incomplete or without their UNet key names: {_key_list(missing) or 'no UNet keys'}"
                )
            probe = {k: tensors[ema_key(k)] for k in names}
            out, consumed_names = traced(lambda s: convert_ldm_unet_checkpoint(s, config), probe)
            consumed = {ema_key(k) for k in consumed_names} | (EMA_BOOKKEEPING & tensors.keys())
        elif name == "vae":
            prefix = LDM_PREFIXES["vae"] if any(k.startswith(LDM_PREFIXES["vae"]) for k in tensors) else ""
            stripped = {k[len(prefix) :]: v for k, v in tensors.items()}
            out, consumed_stripped = traced(lambda s: convert_ldm_vae_checkpoint(s, config), stripped)
            consumed = {prefix + k for k in consumed_stripped}
        elif name == "controlnet":
            out, consumed = traced(lambda s: convert_controlnet_checkpoint(s, config), tensors)
        elif name == "text_encoder":
            accessed: set[str] = set()
            tree = StateTree(tensors, LDM_PREFIXES["text_encoder"], accessed)
            model = convert_ldm_bert_checkpoint(tree, LDMBertConfig(**config))
            out, consumed = {k: v.detach() for k, v in model.state_dict().items()}, accessed
        else:
            raise KeyError(name)
    except ConversionError as exc:
        raise ConversionError(f"{source}: {name}: {exc}") from None
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ConversionError(f"{source}: {name}: the checkpoint does not match the configured architecture ({exc!r})") from None
    unused = set(tensors) - consumed
    if unused:
        raise ConversionError(
            f"{source}: {name}: {len(unused)} checkpoint key(s) were not used by the conversion — the checkpoint has "
            f"parts the configured architecture lacks (wrong original_config?): {_key_list(unused)}"
        )
    return {k: v.contiguous() for k, v in out.items()}


# ----------------------------------------------------------------------------- modules


MODULE_CLASSES: dict[str, type[nn.Module]] = {
    "unet": UNet2DConditionModel,
    "unet_ema": UNet2DConditionModel,
    "vae": AutoencoderKL,
    "controlnet": ControlNetModel,
    "text_encoder": LDMBertModel,
}


def build_module(name: str, config: dict[str, Any], state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Instantiate a component without random initialisation and fill it completely from ``state``."""
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        module = LDMBertModel(LDMBertConfig(**kwargs)) if name == "text_encoder" else MODULE_CLASSES[name](**kwargs)
    expected = module.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} (model expects {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong:
        raise ConversionError(f"{source}: {name}: tensor shapes do not match the configured architecture: {_key_list(wrong, 6)}")
    result = module.load_state_dict(state, strict=False, assign=True)
    problems = []
    if result.missing_keys:
        problems.append(f"not filled by the checkpoint: {_key_list(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"no place in the model for: {_key_list(result.unexpected_keys)}")
    unset = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if unset and not result.missing_keys:
        problems.append(f"left uninitialised: {_key_list(unset)}")
    if problems:
        raise ConversionError(f"{source}: {name}: partial load — " + "; ".join(problems))
    if name == "controlnet":
        _set_hint_downsample(module, int(config.get("_hint_downsample", 8)))
    return module.eval().requires_grad_(False)


def _set_hint_downsample(controlnet: ControlNetModel, factor: int) -> None:
    """Keep only log2(factor) stride-2 convolutions in the hint encoder (the last ones become stride 1)."""
    strided = [b for b in controlnet.controlnet_cond_embedding.blocks if b.stride == (2, 2)]
    keep = int(round(math.log2(factor)))
    if 2**keep != factor or keep > len(strided):
        raise ConversionError(f"ControlNet hint encoder cannot downsample by {factor}")
    for conv in strided[keep:]:
        conv.stride = (1, 1)
