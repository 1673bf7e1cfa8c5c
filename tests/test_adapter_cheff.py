"""Cheff end to end on tiny checkpoints in the released layout, including the SR3 stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tiny_ldm import (
    TinyLDM,
    place,
    randomize,
    tiny_original_config,
    write_bert_vocab,
    write_yaml,
)

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.cheff import CheffGenerator, CheffOptions
from xreal_bench.generators.diffusion.sr3 import SR3Config, SR3UNet
from xreal_bench.generators.registry import generator_class
from xreal_bench.types import Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

TINY_SR = {"dim": 16, "dim_mults": [1, 2, 2], "num_attention_layer": 2}  # full attention at 32 x 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    original = tiny_original_config()
    manager = WeightsManager(root)
    tiny = TinyLDM(original, seed=3)
    place(manager, "cheff-autoencoder", tiny.autoencoder_checkpoint())
    place(manager, "cheff-diff-t2i", tiny.backbone_checkpoint())
    place(manager, "cheff-sr-fine", {"model": randomize(SR3UNet(SR3Config(**TINY_SR)), 5).state_dict()})
    write_bert_vocab(manager.path("bert-tokenizer"))
    config = str(write_yaml(root / "tiny-cheff.yaml", original))
    sr_config = root / "tiny-sr.yaml"
    sr_config.write_text(yaml.safe_dump(TINY_SR))
    generator = CheffGenerator("cheff", CheffOptions(original_config=config, steps=10), GeneratorContext(weights=manager))
    yield manager, config, str(sr_config), generator
    torch.set_num_threads(threads)


def condition(seed: int, report: str = "Large right pleural effusion.", prompt: str = "Pleural Effusion") -> Condition:
    return Condition(
        case_id=f"c{seed}", sample_index=0, seed=seed, labels=(0,) * 14, prompt=prompt, report=report, image_path=Path("x")
    )


def test_declarations_and_defaults():
    cls = generator_class("cheff")
    assert cls.inputs == {"text", "labels"} and tuple(a.name for a in cls.artifacts) == (
        "cheff-autoencoder",
        "cheff-diff-t2i",
        "bert-tokenizer",
        "cheff-sr-fine",
    )
    d = CheffOptions()
    assert (d.steps, d.eta, d.guidance, d.prompt_source, d.super_resolution, d.sr_size, d.sr_steps, d.sr_eta) == (
        100,
        1.0,
        1.0,
        "report",
        False,
        1024,
        100,
        0.0,
    )
    with pytest.raises(ConfigError, match="sr_steps=300"):
        build(CheffOptions, {"super_resolution": True, "sr_steps": 300}, "bench.toml")


def test_batch_prompts_and_fallbacks(setup):
    _, _, _, generator = setup
    batch = [condition(1), condition(2, report=""), condition(3, report="", prompt="")]
    output = generator.generate(batch)
    images = output.images
    assert [tuple(i.shape) for i in images] == [(1, 64, 64)] * 3 and generator.resolution == 64
    assert all(float(i.min()) >= 0 and float(i.max()) <= 1 for i in images)
    assert list(output.notes) == [
        (),
        ("prompt from label names (report empty): 'Pleural Effusion'",),
        ("prompt from fallback_prompt (report empty): 'No Finding'",),
    ]
    alone = generator.generate([condition(2, report="")]).images
    torch.testing.assert_close(alone[0], images[1], rtol=0, atol=1e-4)
    assert (images[0] - images[1]).abs().mean() > 1e-4  # the prompt matters


def test_output_is_the_decoded_signed_image_mapped_to_unit_range(setup):
    _, _, _, generator = setup
    decoded = []
    original_decode = generator.model.decode
    generator.model.decode = lambda z: decoded.append(original_decode(z)) or decoded[-1]
    try:
        image = generator.generate([condition(4)]).images[0]
    finally:
        generator.model.decode = original_decode
    signed = decoded[0]
    assert float(signed.min()) < 0  # the decoder works in [-1, 1]
    gray = ((signed.clamp(-1, 1) + 1) / 2 * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(image, gray, rtol=0, atol=1e-6)


def test_super_resolution_stage(setup):
    manager, config, sr_config, _ = setup
    options = CheffOptions(original_config=config, steps=10, super_resolution=True, sr_size=128, sr_steps=4, sr_config=sr_config)
    generator = CheffGenerator("cheff", options, GeneratorContext(weights=manager))
    images = generator.generate([condition(5), condition(6)]).images
    assert generator.resolution == 128
    assert [tuple(i.shape) for i in images] == [(1, 128, 128)] * 2
    assert all(float(i.min()) >= 0 and float(i.max()) <= 1 for i in images)
    torch.testing.assert_close(generator.generate([condition(6)]).images[0], images[1], rtol=0, atol=1e-4)


def test_sr_checkpoint_of_another_architecture_is_rejected(setup):
    manager, config, _, _ = setup
    options = CheffOptions(
        original_config=config, steps=10, super_resolution=True, sr_size=128, sr_steps=4
    )  # released SR architecture
    with pytest.raises(UserFacingError, match=r"does not match the SR architecture.*\n  not filled: .*downs\.2"):
        CheffGenerator("cheff", options, GeneratorContext(weights=manager))


def test_sr_unet_has_the_released_parameter_names_and_shapes():
    with torch.device("meta"):
        model = SR3UNet(SR3Config())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "init_conv.weight": (10, 2, 7, 7),  # init_dim = 16 // 3 * 2
        "time_mlp.1.weight": (64, 16),
        "time_mlp.3.weight": (64, 64),
        "downs.0.0.mlp.1.weight": (16, 64),
        "downs.0.0.block1.proj.weight": (16, 10, 3, 3),
        "downs.0.0.res_conv.weight": (16, 10, 1, 1),
        "downs.0.3.weight": (16, 16, 4, 4),
        "downs.4.2.fn.fn.to_qkv.weight": (384, 256, 1, 1),  # linear attention from level 4 (5 attention levels)
        "downs.4.2.fn.fn.to_out.1.weight": (256,),
        "downs.4.2.fn.norm.weight": (256,),
        "mid_attn.fn.fn.to_qkv.weight": (384, 512, 1, 1),
        "mid_attn.fn.fn.to_out.weight": (512, 128, 1, 1),
        "ups.0.0.block1.proj.weight": (512, 1024, 3, 3),
        "ups.6.3.weight": (16, 16, 4, 4),  # every up level upsamples (ConvTranspose2d)
        "ups.6.2.fn.fn.to_qkv.weight": (384, 16, 1, 1),
        "final_conv.0.fn.0.proj.weight": (16, 16, 3, 3),
        "final_conv.1.weight": (1, 16, 1, 1),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert "downs.3.2.fn.fn.to_qkv.weight" not in shapes and "downs.7.3.weight" not in shapes


def test_missing_sr_weights_only_matter_when_enabled(tmp_path):
    manager = WeightsManager(tmp_path)
    with pytest.raises(MissingWeightsError, match="missing weights 'cheff-autoencoder'"):
        CheffGenerator("cheff", CheffOptions(), GeneratorContext(weights=manager))
    for name in ("cheff-autoencoder", "cheff-diff-t2i"):
        manager.path(name).parent.mkdir(parents=True, exist_ok=True)
        manager.path(name).write_bytes(b"placeholder")
    write_bert_vocab(manager.path("bert-tokenizer"))
    with pytest.raises(MissingWeightsError, match=r"missing weights 'cheff-sr-fine'.*\n(.*\n)*.*reported dead"):
        CheffGenerator("cheff", CheffOptions(super_resolution=True), GeneratorContext(weights=manager))
