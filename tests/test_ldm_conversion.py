"""CompVis / lllyasviel checkpoints -> diffusers: key round trips, accounting errors, the cache,
the safe pickle reader, the released architecture configs."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch
from tiny_ldm import TinyLDM, tiny_original_config, write_yaml

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.conversion import (
    ConversionError,
    build_module,
    component_config,
    controlnet_config,
    convert_component,
    partition,
    text_encoder_config,
    unet_config,
    vae_config,
)
from xreal_bench.generators.diffusion.converted_cache import ConvertedCheckpoint
from xreal_bench.safe_load import read_checkpoint, state_dict_of

LOG = logging.getLogger("test")


@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TinyLDM(tiny_original_config(control=True))
    torch.set_num_threads(threads)


def convert_and_build(name, state, kind, original):
    part = partition(state, kind, "test.ckpt")
    return build_module(name, component_config(name, original), convert_component(name, part, original, "test.ckpt"), "test.ckpt")


def assert_same_weights(module, reference):
    ours, ref = module.state_dict(), reference.state_dict()
    assert set(ours) == set(ref)
    different = [k for k in ref if not torch.equal(ours[k], ref[k])]
    assert not different, different[:5]


@pytest.mark.parametrize(
    "name, kind, keys",
    [
        ("unet", "ldm", lambda t: t.unet_keys()),
        ("text_encoder", "ldm", lambda t: t.text_keys()),
        ("vae", "ldm", lambda t: t.vae_keys("first_stage_model.")),
        ("vae", "autoencoder", lambda t: t.vae_keys()),
        ("controlnet", "controlnet", lambda t: t.control_keys()),
        ("controlnet", "controlnet", lambda t: t.control_keys(prefix="")),  # a ControlNet saved without its prefix
    ],
)
def test_round_trip_consumes_every_key_and_fills_every_parameter(tiny, name, kind, keys):
    reference = {"unet": tiny.unet, "text_encoder": tiny.text_encoder, "vae": tiny.vae, "controlnet": tiny.controlnet}[name]
    state = keys(tiny)
    module = convert_and_build(name, state, kind, tiny.original)
    assert_same_weights(module, reference)
    assert sum(p.numel() for p in module.parameters()) == sum(v.numel() for v in state.values())


def test_ema_weights_are_taken_from_model_ema(tiny):
    state = tiny.backbone_checkpoint(ema=True)["state_dict"]
    module = convert_and_build("unet_ema", state, "ldm", tiny.original)
    for key, value in module.state_dict().items():
        assert torch.equal(value, tiny.unet.state_dict()[key] * 0.5)  # the fixture's EMA copy is 0.5 x the weights


def test_unknown_and_unused_keys_are_errors_naming_them(tiny):
    state = {**tiny.unet_keys(), "optimizer.momentum": torch.zeros(1)}
    with pytest.raises(ConversionError, match="optimizer.momentum"):
        partition(state, "ldm", "test.ckpt")
    state = {**tiny.unet_keys(), "model.diffusion_model.extra_block.weight": torch.zeros(1)}
    with pytest.raises(ConversionError, match=r"not used by the conversion.*model\.diffusion_model\.extra_block\.weight"):
        convert_component("unet", partition(state, "ldm", "x"), tiny.original, "x")


def test_missing_and_misshapen_keys_are_partial_load_errors(tiny):
    state = tiny.unet_keys()
    del state["model.diffusion_model.input_blocks.0.0.weight"]
    with pytest.raises(ConversionError, match=r"partial load.*conv_in\.weight"):
        convert_and_build("unet", state, "ldm", tiny.original)
    state = tiny.unet_keys()
    state["model.diffusion_model.out.2.weight"] = torch.zeros(5, 32, 3, 3)
    with pytest.raises(ConversionError, match=r"shapes do not match.*conv_out\.weight \(5, 32, 3, 3\)"):
        convert_and_build("unet", state, "ldm", tiny.original)


def test_a_different_noise_schedule_is_rejected(tiny, tmp_path):
    checkpoint = tiny.backbone_checkpoint()
    checkpoint["state_dict"]["alphas_cumprod"] = checkpoint["state_dict"]["alphas_cumprod"] ** 1.1
    path = tmp_path / "backbone.pth"
    torch.save(checkpoint, path)
    with pytest.raises(ConversionError, match="noise schedule"):
        ConvertedCheckpoint(path, "ldm", tiny.original, LOG).load("unet")


def test_hint_encoder_downsamples_to_the_latent_size(tiny):
    module = convert_and_build("controlnet", tiny.control_keys(), "controlnet", tiny.original)
    hint = torch.zeros(1, 3, 64, 64)
    assert module.controlnet_cond_embedding(hint).shape[-1] == 16  # 64 px image -> 16 x 16 latent: 4x, not 8x
    assert [b.stride for b in module.controlnet_cond_embedding.blocks] == [(1, 1), (2, 2), (1, 1), (2, 2), (1, 1), (1, 1)]


# ----------------------------------------------------------------------------- cache


def test_conversion_is_cached_and_invalidated_when_the_original_changes(tiny, tmp_path, monkeypatch):
    path = tmp_path / "backbone.pth"
    torch.save(tiny.backbone_checkpoint(), path)
    first = ConvertedCheckpoint(path, "ldm", tiny.original, LOG).load("unet")
    assert (tmp_path / "backbone.pth.converted" / "unet.safetensors").is_file()

    import xreal_bench.generators.diffusion.converted_cache as cache

    def no_reading(*args, **kwargs):
        raise AssertionError("the original was read although a valid cache exists")

    monkeypatch.setattr(cache, "read_checkpoint", no_reading)
    assert_same_weights(ConvertedCheckpoint(path, "ldm", tiny.original, LOG).load("unet"), first)
    monkeypatch.undo()

    other = TinyLDM(tiny.original, seed=42)
    torch.save(other.backbone_checkpoint(), path)
    os.utime(path, ns=(1, 1))  # a new file, whatever its timestamps
    assert_same_weights(ConvertedCheckpoint(path, "ldm", tiny.original, LOG).load("unet"), other.unet)


def test_unwritable_cache_folder_still_loads(tiny, tmp_path, caplog):
    path = tmp_path / "ldm_ae.pth"
    torch.save(tiny.autoencoder_checkpoint(), path)
    (tmp_path / "ldm_ae.pth.converted").write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        module = ConvertedCheckpoint(path, "autoencoder", tiny.original, LOG).load("vae")
    assert_same_weights(module, tiny.vae)
    assert "cannot cache converted weights" in caplog.text


# ----------------------------------------------------------------------------- reading pickles


class Payload:
    """Unpickling this would run code (writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_lightning_style_pickles_load_without_running_their_code(tiny, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": tiny.text_keys(), "hyper_parameters": Payload(marker), "callbacks": {"x": tmp_path}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # torch's safe loader refuses this file
    checkpoint = read_checkpoint(path, LOG)
    assert not marker.exists()
    state = state_dict_of(checkpoint, path)
    assert set(state) == set(tiny.text_keys()) and all(torch.equal(state[k], v) for k, v in tiny.text_keys().items())
    assert "not loaded" in repr(checkpoint["hyper_parameters"])


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    bad = tmp_path / "backbone.pth"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(UserFacingError, match="cannot read checkpoint"):
        read_checkpoint(bad, LOG)
    torch.save({"weights": [1, 2]}, bad)
    with pytest.raises(UserFacingError, match="expected a checkpoint with a 'state_dict' tensor dict"):
        state_dict_of(read_checkpoint(bad, LOG), bad)


# ----------------------------------------------------------------------------- architecture configs


def test_released_architecture_as_diffusers_configs():
    unet = unet_config(oc.XREAL)
    assert unet["block_out_channels"] == [224, 448, 896, 896]
    assert unet["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert unet["up_block_types"] == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    assert (unet["in_channels"], unet["out_channels"], unet["layers_per_block"]) == (3, 3, 2)
    assert (unet["attention_head_dim"], unet["cross_attention_dim"], unet["sample_size"]) == (8, 1280, 64)
    assert unet["use_linear_projection"] is False
    vae = vae_config(oc.XREAL)
    assert (vae["block_out_channels"], vae["latent_channels"], vae["layers_per_block"]) == ([128, 256, 512], 3, 2)
    assert vae["scaling_factor"] == 0.18215
    bert = text_encoder_config(oc.XREAL)
    assert (bert["d_model"], bert["encoder_layers"], bert["max_position_embeddings"], bert["encoder_ffn_dim"]) == (
        1280,
        32,
        150,
        5120,
    )
    assert controlnet_config(oc.CONTROLNET)["conditioning_channels"] == 3
    assert (oc.image_size(oc.XREAL), oc.latent_size(oc.XREAL), oc.schedule(oc.XREAL)) == (256, 64, (0.0015, 0.0295, 1000))
    assert unet_config(oc.CHEFF) == unet and vae_config(oc.CHEFF) == vae


def test_user_original_config_errors_name_the_key(tmp_path):
    config = tiny_original_config()
    del config["model"]["params"]["unet_config"]["params"]["context_dim"]
    with pytest.raises(UserFacingError, match="missing key 'context_dim'"):
        oc.load_original_config(str(write_yaml(tmp_path / "a.yaml", config)), oc.XREAL)
    config = tiny_original_config()
    config["model"]["params"]["unet_config"]["params"]["use_linear_in_transformer"] = True
    with pytest.raises(UserFacingError, match="use_linear_in_transformer = true is not supported"):
        oc.load_original_config(str(write_yaml(tmp_path / "b.yaml", config)), oc.XREAL)
    with pytest.raises(UserFacingError, match="file not found"):
        oc.load_original_config(str(tmp_path / "none.yaml"), oc.XREAL)
    loaded = oc.load_original_config(str(write_yaml(tmp_path / "c.yaml", tiny_original_config())), oc.XREAL)
    assert oc.latent_size(loaded) == 16
