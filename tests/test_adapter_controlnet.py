"""XReal's ControlNet baseline end to end on tiny checkpoints in the lllyasviel/CompVis layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_ldm import TinyLDM, place, tiny_original_config, write_bert_vocab, write_yaml

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.controlnet import ControlNetGenerator, ControlNetOptions
from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.sampler import ddim_sample
from xreal_bench.generators.prompts import PROMPT_RULES
from xreal_bench.generators.registry import generator_class
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

STEPS = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    original = tiny_original_config(control=True)
    tiny = TinyLDM(original, seed=0)
    manager = WeightsManager(root)
    place(manager, "xreal-backbone", tiny.backbone_checkpoint())
    place(manager, "xreal-ldm-ae", tiny.autoencoder_checkpoint())
    place(manager, "xreal-controlnet", tiny.controlnet_checkpoint())
    write_bert_vocab(manager.path("bert-tokenizer"))
    config = str(write_yaml(root / "tiny-cnet.yaml", original))
    yield manager, config, tiny, make(manager, config)
    torch.set_num_threads(threads)


def make(manager, config, **options):
    options = ControlNetOptions(original_config=config, steps=STEPS, **options)
    return ControlNetGenerator("controlnet", options, GeneratorContext(weights=manager))


def condition(seed: int, labels: tuple[str, ...] = ("Edema",), heart: int = 24) -> Condition:
    anatomy = np.zeros((64, 64), np.uint8)
    anatomy[10:52, 36:56], anatomy[10:52, 8:28], anatomy[30:46, heart : heart + 16] = 1, 2, 3
    return Condition(
        case_id=f"c{seed}",
        sample_index=0,
        seed=seed,
        labels=tuple(int(name in labels) for name in CHEXPERT_LABELS),
        prompt=", ".join(labels),
        report="",
        image_path=Path("unused.png"),
        anatomy=anatomy,
    )


def test_declarations():
    cls = generator_class("controlnet")
    assert cls.inputs == {"labels", "anatomy"} and "xreal-controlnet" in {a.name for a in cls.artifacts}
    defaults = ControlNetOptions()
    assert (defaults.steps, defaults.eta, defaults.guidance, defaults.control_scale) == (100, 1.0, 1.0, 1.0)
    assert (defaults.prompt_rule, defaults.fallback_prompt, defaults.backbone) == ("controlnet_labels", "", "auto")
    with pytest.raises(ConfigError, match=r"backbone: expected one of 'auto', 'file', 'controlnet'"):
        build(ControlNetOptions, {"backbone": "none"}, "bench.toml")
    with pytest.raises(ConfigError, match=r"prompt_rule: unknown prompt rule 'xreal' \(known: .*controlnet_labels\)"):
        build(ControlNetOptions, {"prompt_rule": "xreal"}, "bench.toml")


def test_required_artifacts_follow_the_backbone_option():
    def names(backbone: str) -> list[str]:
        return [a.name for a in ControlNetGenerator.required_artifacts(ControlNetOptions(backbone=backbone))]

    assert names("file") == ["xreal-backbone", "xreal-ldm-ae", "xreal-controlnet", "bert-tokenizer"]
    assert names("auto") == names("controlnet") == ["xreal-ldm-ae", "xreal-controlnet", "bert-tokenizer"]


def test_label_text_is_the_controlnet_training_text_with_support_devices(setup):
    _, _, _, generator = setup
    assert PROMPT_RULES["controlnet_labels"].label_set == CHEXPERT_LABELS  # Support Devices and No Finding included
    output = generator.generate([condition(40, labels=("Support Devices", "Edema", "Pleural Effusion"))])
    assert output.inputs[0] == {
        "prompt": "Edema Pleural Effusion Support Devices",
        "prompt_rule": "controlnet_labels",
        "prompt_field": "labels",
        "tokens_truncated": 0,
    }


def test_batch_generation_and_seed_independence(setup):
    _, _, _, generator = setup
    output = generator.generate([condition(1), condition(2, labels=()), condition(3)])
    images = output.images
    assert [tuple(i.shape) for i in images] == [(1, 64, 64)] * 3 and generator.resolution == 64
    assert all(0 <= float(i.min()) and float(i.max()) <= 1 for i in images)
    assert output.notes[1] == ("prompt from fallback_prompt (labels empty): ''",)
    assert [i["prompt"] for i in output.inputs] == ["Edema", "", "Edema"]
    alone = generator.generate([condition(3)]).images
    torch.testing.assert_close(alone[0], images[2], rtol=0, atol=1e-4)


def test_the_anatomy_hint_steers_the_image(setup):
    _, _, _, generator = setup
    a, b = generator.generate([condition(4, heart=20), condition(4, heart=30)]).images
    assert (a - b).abs().mean() > 1e-3  # same seed, different heart position


def test_control_scale_zero_is_the_plain_backbone(setup):
    manager, config, _, _ = setup
    generator = make(manager, config, control_scale=0.0)
    image = generator.generate([condition(5)]).images[0]
    model = generator.model
    noise = SampleNoise.from_seeds([5])
    denoise = LatentDenoiser(model.unet, generator.prompts(["Edema"]))
    z = ddim_sample(denoise, model.scheduler(), noise, model.latent_shape, steps=STEPS, eta=1.0)
    backbone_only = model.decode(z).clamp(0, 1)
    expected = (backbone_only * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(image, expected, rtol=0, atol=1e-5)


def test_controlnet_saved_without_prefix_loads(setup, tmp_path):
    manager, config, tiny, generator = setup
    other = WeightsManager(tmp_path)
    for name in ("xreal-backbone", "xreal-ldm-ae"):
        other.path(name).parent.mkdir(parents=True, exist_ok=True)
        other.path(name).write_bytes(manager.path(name).read_bytes())
    place(other, "xreal-controlnet", tiny.control_keys(prefix=""))  # a bare state dict, no 'state_dict' key
    write_bert_vocab(other.path("bert-tokenizer"))
    bare = ControlNetGenerator("controlnet", generator.options, GeneratorContext(weights=other))
    from_bare, from_prefixed = bare.generate([condition(6)]).images[0], generator.generate([condition(6)]).images[0]
    torch.testing.assert_close(from_bare, from_prefixed, rtol=0, atol=1e-5)


def test_missing_controlnet_checkpoint_fails_first(setup, tmp_path):
    manager, _, _, _ = setup
    other = WeightsManager(tmp_path)
    for name in ("xreal-backbone", "xreal-ldm-ae"):
        other.path(name).parent.mkdir(parents=True, exist_ok=True)
        other.path(name).write_bytes(manager.path(name).read_bytes())
    write_bert_vocab(other.path("bert-tokenizer"))
    with pytest.raises(MissingWeightsError, match=r"missing weights 'xreal-controlnet'.*\n.*controlnet.ckpt"):
        ControlNetGenerator("controlnet", ControlNetOptions(), GeneratorContext(weights=other))
    assert not list(tmp_path.rglob("*.converted"))


def manager_with(root, manager: WeightsManager, controlnet_checkpoint, backbone=None) -> WeightsManager:
    """A weights folder holding the autoencoder, the tokenizer, this ControlNet file and, if given, a backbone."""
    other = WeightsManager(root)
    other.path("xreal-ldm-ae").parent.mkdir(parents=True, exist_ok=True)
    other.path("xreal-ldm-ae").write_bytes(manager.path("xreal-ldm-ae").read_bytes())
    write_bert_vocab(other.path("bert-tokenizer"))
    place(other, "xreal-controlnet", controlnet_checkpoint)
    if backbone is not None:
        place(other, "xreal-backbone", backbone)
    return other


def test_full_controlldm_checkpoint_alone_needs_no_backbone(setup, tmp_path):
    manager, config, tiny, generator = setup
    alone = manager_with(tmp_path, manager, tiny.full_controlldm_checkpoint())
    assert not alone.path("xreal-backbone").exists()
    expected = generator.generate([condition(7), condition(8, labels=("Cardiomegaly",))]).images  # backbone + control-only file
    for backbone in ("auto", "controlnet"):
        full = make(alone, config, backbone=backbone)
        images = full.generate([condition(7), condition(8, labels=("Cardiomegaly",))]).images
        for got, want in zip(images, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    with pytest.raises(MissingWeightsError, match="missing weights 'xreal-backbone'"):
        make(alone, config, backbone="file")


def test_a_controlnet_only_file_without_backbone_names_both_files(setup, tmp_path):
    manager, config, tiny, _ = setup
    control_only = manager_with(tmp_path / "a", manager, tiny.controlnet_checkpoint())
    control_file, backbone_file = control_only.path("xreal-controlnet"), control_only.path("xreal-backbone")
    for backbone, why in (
        ("auto", f"{backbone_file} does not exist"),
        ("controlnet", "backbone = 'controlnet' reads no other file"),
    ):
        with pytest.raises(UserFacingError) as info:
            make(control_only, config, backbone=backbone)
        message = str(info.value)
        assert f"xreal-controlnet ({control_file}) holds no model.diffusion_model.* keys" in message
        assert f"xreal-backbone ({backbone_file}) is not used ({why})" in message
    with_backbone = manager_with(tmp_path / "b", manager, tiny.controlnet_checkpoint(), backbone=tiny.backbone_checkpoint())
    with pytest.raises(UserFacingError, match="backbone = 'controlnet' reads no other file"):
        make(with_backbone, config, backbone="controlnet")
    unet_less = {"state_dict": tiny.text_keys()}
    neither = manager_with(tmp_path / "c", manager, tiny.controlnet_checkpoint(), backbone=unet_less)
    with pytest.raises(UserFacingError) as info:
        make(neither, config, backbone="file")
    message = str(info.value)
    assert "no checkpoint provides the unet (model.diffusion_model.* keys)" in message
    assert str(neither.path("xreal-backbone")) in message and str(neither.path("xreal-controlnet")) in message
