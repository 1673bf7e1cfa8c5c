"""The released architectures, written as the CompVis ``original_config`` that diffusers'
single-file converters read, and the loader for a user's own YAML of the same shape.

The defaults are the released models (see REFERENCE.md sections 6-8): XReal's backbone
(``configs/xreal-diff-t2i.yml``), its ControlNet (``configs/xreal-diff-t2i_cnet.yml``) and Cheff's
text-to-image LDM (``CheffLDMT2I``) share one architecture — UNet in/out 3, 224 channels,
channel_mult (1, 2, 4, 4), 2 res blocks, attention at downsample rates 8/4/2 with 8 heads and
spatial transformers of depth 1 on a 1280-wide context; a KL autoencoder (ch 128, ch_mult
(1, 2, 4), 2 res blocks, no attention, 3 latent channels, 256 px -> 64 x 64); a BERT-style text
encoder (1280 wide, 32 deep, 150 positions, bert-base-uncased vocabulary); the LDM linear
schedule 0.0015 -> 0.0295 over 1000 steps; latent scale 0.18215. A checkpoint trained with
other settings is used by pointing the adapter's ``original_config`` option at its YAML.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from xreal_bench.errors import UserFacingError

UNET_PARAMS: dict[str, Any] = {
    "image_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "model_channels": 224,
    "attention_resolutions": [8, 4, 2],
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4, 4],
    "num_heads": 8,
    "use_spatial_transformer": True,
    "transformer_depth": 1,
    "context_dim": 1280,
    "use_checkpoint": True,
    "legacy": False,
}

AUTOENCODER_PARAMS: dict[str, Any] = {
    "embed_dim": 3,
    "ddconfig": {
        "double_z": True,
        "z_channels": 3,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 128,
        "ch_mult": [1, 2, 4],
        "num_res_blocks": 2,
        "attn_resolutions": [],
        "dropout": 0.0,
    },
}

BERT_PARAMS: dict[str, Any] = {"n_embed": 1280, "n_layer": 32, "vocab_size": 30522, "max_seq_len": 150}


def _ldm(**extra: Any) -> dict[str, Any]:
    params = {
        "linear_start": 0.0015,
        "linear_end": 0.0295,
        "timesteps": 1000,
        "image_size": 64,
        "channels": 3,
        "conditioning_key": "crossattn",
        "scale_factor": 0.18215,
        "unet_config": {"params": copy.deepcopy(UNET_PARAMS)},
        "first_stage_config": {"params": copy.deepcopy(AUTOENCODER_PARAMS)},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.BERTEmbedder", "params": dict(BERT_PARAMS)},
        **extra,
    }
    return {"model": {"params": params}}


#: XReal's backbone (and its anatomy controller's autoencoder, same ``first_stage_config``).
XREAL = _ldm()
#: Cheff's text-to-image LDM: the same architecture as XReal's backbone.
CHEFF = _ldm()
#: XReal's ControlNet baseline: the backbone plus a ControlNet copy of its encoder (3-channel hint).
CONTROLNET = _ldm(control_stage_config={"params": {**copy.deepcopy(UNET_PARAMS), "hint_channels": 3}})

#: Fields of a UNet config that change the architecture (and so must agree between UNet and ControlNet).
ARCHITECTURE_FIELDS = (
    "in_channels",
    "model_channels",
    "attention_resolutions",
    "num_res_blocks",
    "channel_mult",
    "num_heads",
    "transformer_depth",
    "context_dim",
)


def load_original_config(path: str, default: dict[str, Any]) -> dict[str, Any]:
    """``default`` (a copy) when ``path`` is empty, else the CompVis YAML at ``path``, checked."""
    if not path:
        config = copy.deepcopy(default)
        source = "<released architecture>"
    else:
        source = str(path)
        try:
            config = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise UserFacingError(f"original_config: file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise UserFacingError(f"original_config {path}: not valid YAML ({exc})") from None
    check_original_config(config, source, needs_control="control_stage_config" in default["model"]["params"])
    return config


def _get(config: dict[str, Any], dotted: str, source: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserFacingError(f"original_config {source}: missing key {dotted!r}")
        node = node[part]
    return node


def _unsupported(source: str, where: str, what: str) -> UserFacingError:
    return UserFacingError(f"original_config {source}: {where}: {what} is not supported by the diffusers-based adapters")


def check_unet_params(params: dict[str, Any], source: str, where: str) -> None:
    for key in ("in_channels", "model_channels", "attention_resolutions", "num_res_blocks", "channel_mult", "context_dim"):
        _get(params, key, f"{source} ({where})")
    if not params.get("use_spatial_transformer", False):
        raise _unsupported(source, where, "use_spatial_transformer = false (no cross-attention)")
    if params.get("num_heads", -1) in (-1, None):
        raise _unsupported(source, where, "num_head_channels without num_heads")
    for flag in ("use_scale_shift_norm", "resblock_updown", "use_linear_in_transformer"):
        if params.get(flag):
            raise _unsupported(source, where, f"{flag} = true")
    for key in ("num_classes", "disable_self_attentions", "num_attention_blocks"):
        if params.get(key) is not None:
            raise _unsupported(source, where, key)
    if not isinstance(params.get("num_res_blocks"), int):
        raise _unsupported(source, where, "per-level num_res_blocks")


def check_original_config(config: Any, source: str, needs_control: bool) -> None:
    """Fail early, naming the key, on configs the diffusers models cannot represent."""
    if not isinstance(config, dict):
        raise UserFacingError(f"original_config {source}: expected a mapping with model.params")
    params = _get(config, "model.params", source)
    if params.get("parameterization", "eps") != "eps":
        raise _unsupported(source, "model.params", f"parameterization {params['parameterization']!r} (only eps)")
    for key in ("linear_start", "linear_end", "timesteps"):
        _get(params, key, source)
    unet = _get(params, "unet_config.params", source)
    check_unet_params(unet, source, "unet_config")
    ae = _get(params, "first_stage_config.params", source)
    dd = _get(ae, "ddconfig", source)
    for key in ("z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks"):
        _get(dd, key, f"{source} (first_stage_config.params.ddconfig)")
    if dd.get("attn_resolutions"):
        raise _unsupported(source, "first_stage_config", "attention inside the autoencoder's resolution levels")
    if not dd.get("double_z", True) or ae.get("embed_dim", dd["z_channels"]) != dd["z_channels"]:
        raise _unsupported(source, "first_stage_config", "embed_dim != z_channels or double_z = false")
    cond = _get(params, "cond_stage_config", source)
    if not isinstance(cond, dict) or not str(cond.get("target", "BERTEmbedder")).endswith("BERTEmbedder"):
        raise _unsupported(source, "cond_stage_config", f"text encoder {cond!r} (only the LDM BERTEmbedder)")
    _get(cond, "params.n_embed", source)
    _get(cond, "params.n_layer", source)
    if needs_control:
        control = _get(params, "control_stage_config.params", source)
        check_unet_params(control, source, "control_stage_config")
        _get(control, "hint_channels", source)
        differ = [k for k in ARCHITECTURE_FIELDS if control.get(k) != unet.get(k)]
        if differ:
            raise _unsupported(source, "control_stage_config", f"a ControlNet whose {', '.join(differ)} differ from the UNet's")


def image_size(config: dict[str, Any]) -> int:
    """Pixel side of the model's images (the autoencoder's ``resolution``)."""
    return int(config["model"]["params"]["first_stage_config"]["params"]["ddconfig"]["resolution"])


def latent_size(config: dict[str, Any]) -> int:
    """Side of the latent: the image side over the autoencoder's downsampling factor."""
    ch_mult = config["model"]["params"]["first_stage_config"]["params"]["ddconfig"]["ch_mult"]
    return image_size(config) // 2 ** (len(ch_mult) - 1)


def latent_channels(config: dict[str, Any]) -> int:
    return int(config["model"]["params"]["first_stage_config"]["params"]["ddconfig"]["z_channels"])


def schedule(config: dict[str, Any]) -> tuple[float, float, int]:
    p = config["model"]["params"]
    return float(p["linear_start"]), float(p["linear_end"]), int(p["timesteps"])


def scale_factor(config: dict[str, Any]) -> float:
    """The latent scale (LatentDiffusion's default is 1.0 when the config omits it)."""
    return float(config["model"]["params"].get("scale_factor", 1.0))


def bert_params(config: dict[str, Any]) -> dict[str, Any]:
    """BERTEmbedder parameters with the original defaults filled in."""
    params = config["model"]["params"]["cond_stage_config"]["params"]
    return {"vocab_size": 30522, "max_seq_len": 150, **params}


def scaled_down(config: dict[str, Any], image_size: int = 64, width: int = 32, vocab_size: int = 30522) -> dict[str, Any]:
    """The same architecture family at tiny widths (tests and CPU benchmarks): every structural
    choice kept (levels, attention rates, res blocks, heads, depths), channels ``width`` (x2 from
    the second level), ``image_size`` px images, a 2-layer ``width``-wide text encoder."""
    small = copy.deepcopy(config)
    params = small["model"]["params"]
    latent = image_size // 4
    params["image_size"] = latent
    for key in ("unet_config", "control_stage_config"):
        if key in params:
            unet = params[key]["params"]
            levels = len(unet["channel_mult"])
            unet.update(image_size=latent, model_channels=width, channel_mult=[1] + [2] * (levels - 1), context_dim=width)
    dd = params["first_stage_config"]["params"]["ddconfig"]
    dd.update(resolution=image_size, ch=width, ch_mult=[1] + [2] * (len(dd["ch_mult"]) - 1))
    params["cond_stage_config"]["params"].update(n_embed=width, n_layer=2, vocab_size=vocab_size)
    return small
