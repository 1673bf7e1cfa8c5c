"""Cheff end to end on tiny checkpoints in the released layout, including the SR3 stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from tiny_ldm import (
    TinyLDM,
    place,
    randomize,
    tiny_original_config,
    write_bert_vocab,
    write_yaml,
)
from torchvision.transforms.functional import to_grayscale, to_pil_image, to_tensor

from xreal_bench.config import config_from_dict
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.cheff import CheffGenerator, CheffOptions
from xreal_bench.generators.diffusion import sr3
from xreal_bench.generators.diffusion.images import pil_gray_8bit, to_gray
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.schedules import sr3_ddim_scheduler, sr3_ddpm_schedule
from xreal_bench.generators.diffusion.sr3 import SR3Config, SR3UNet, super_resolve
from xreal_bench.generators.registry import generator_class
from xreal_bench.harness import run_generator
from xreal_bench.imaging import quantize, save_png
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.rundir import GeneratorDir
from xreal_bench.types import Case, Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

TINY_SR = {"dim": 16, "dim_mults": [1, 2, 2], "num_attention_layer": 2}  # full attention at 32 x 32
DDPM_SR = {**TINY_SR, "timesteps": 12}  # a short cosine schedule: the DDPM loop runs every step


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
    (root / "ddpm-sr.yaml").write_text(yaml.safe_dump(DDPM_SR))
    generator = CheffGenerator("cheff", CheffOptions(original_config=config, steps=10), GeneratorContext(weights=manager))
    yield manager, config, str(sr_config), generator
    torch.set_num_threads(threads)


def labels_of(*names: str) -> tuple[int, ...]:
    return tuple(int(name in names) for name in CHEXPERT_LABELS)


REPORT = "FINDINGS: Large right pleural effusion. IMPRESSION: Effusion."


def condition(seed: int, report_text: str = REPORT, labels: tuple[str, ...] = ("Pleural Effusion",), **kw) -> Condition:
    values = {
        "case_id": f"c{seed}",
        "sample_index": 0,
        "seed": seed,
        "labels": labels_of(*labels),
        "prompt": ", ".join(labels),
        "report": "Effusion.",
        "image_path": Path("x"),
        "report_text": report_text,
    }
    return Condition(**{**values, **kw})


def test_declarations_and_defaults():
    cls = generator_class("cheff")
    assert cls.inputs == {"text", "labels"} and tuple(a.name for a in cls.artifacts) == (
        "cheff-autoencoder",
        "cheff-diff-t2i",
        "bert-tokenizer",
        "cheff-sr-fine",
    )
    d = CheffOptions()
    assert (d.steps, d.eta, d.guidance, d.prompt_rule, d.fallback_prompt, d.super_resolution) == (
        100,
        1.0,
        1.0,
        "machex",
        "",
        False,
    )
    assert (d.sr_size, d.sr_sampler, d.sr_steps, d.sr_eta, d.sr_input_8bit) == (1024, "ddpm", 100, 0.0, True)
    with pytest.raises(ConfigError, match="sr_steps=300"):
        build(CheffOptions, {"super_resolution": True, "sr_sampler": "ddim", "sr_steps": 300}, "bench.toml")
    assert build(CheffOptions, {"super_resolution": True, "sr_steps": 300}, "bench.toml").sr_sampler == "ddpm"  # unused
    with pytest.raises(ConfigError, match=r"prompt_rule: unknown prompt rule 'report' \(known: machex, impression, .*labels"):
        build(CheffOptions, {"prompt_rule": "report"}, "bench.toml")
    with pytest.raises(ConfigError, match=r"prompt_source: unknown key .*did you mean .prompt_rule.\?"):
        build(CheffOptions, {"prompt_source": "labels"}, "bench.toml")


def test_prompt_is_the_machex_report_text_with_noted_fallbacks(setup):
    _, _, _, generator = setup
    batch = [condition(1), condition(2, report_text=""), condition(3, report_text="", labels=())]
    output = generator.generate(batch)
    images = output.images
    assert [tuple(i.shape) for i in images] == [(1, 64, 64)] * 3 and generator.resolution == 64
    assert all(float(i.min()) >= 0 and float(i.max()) <= 1 for i in images)
    # without a report Cheff gets the empty caption MaCheX gave such studies, whatever the labels
    assert list(output.notes) == [(), *[("prompt from fallback_prompt (report_text empty): ''",)] * 2]
    assert list(output.inputs) == [
        {"prompt": REPORT, "prompt_rule": "machex", "prompt_field": "report_text", "tokens_truncated": 0},
        *[{"prompt": "", "prompt_rule": "machex", "prompt_field": "fallback_prompt", "tokens_truncated": 0}] * 2,
    ]

    alone = generator.generate([condition(2, report_text="")]).images
    torch.testing.assert_close(alone[0], images[1], rtol=0, atol=1e-4)
    assert (images[0] - images[1]).abs().mean() > 1e-4  # the prompt matters


def test_labels_rule_puts_the_label_names_first_and_counts_truncation(setup):
    manager, config, _, _ = setup
    options = CheffOptions(original_config=config, steps=10, prompt_rule="labels", max_tokens=8)
    generator = CheffGenerator("cheff", options, GeneratorContext(weights=manager))
    long_report = "large right sided pleural effusion . no acute finding . small left effusion"
    output = generator.generate([condition(1, report_text=long_report), condition(2, report_text=long_report, labels=())])
    assert [i["prompt"] for i in output.inputs] == ["Pleural Effusion", ""]
    assert output.notes[1] == ("prompt from fallback_prompt (labels empty): ''",)
    machex = CheffGenerator(
        "cheff", CheffOptions(original_config=config, steps=10, max_tokens=8), GeneratorContext(weights=manager)
    )
    record = machex.generate([condition(1, report_text=long_report)]).inputs[0]
    n_tokens = len(machex.prompts.tokenizer(long_report)["input_ids"])  # with [CLS] and [SEP]
    assert record["tokens_truncated"] == n_tokens - 8 > 0


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


def test_super_resolution_stage_with_ddim(setup):
    manager, config, sr_config, _ = setup
    options = CheffOptions(
        original_config=config,
        steps=10,
        super_resolution=True,
        sr_size=128,
        sr_sampler="ddim",
        sr_steps=4,
        sr_config=sr_config,
    )
    generator = CheffGenerator("cheff", options, GeneratorContext(weights=manager))
    images = generator.generate([condition(5), condition(6)]).images
    assert generator.resolution == 128
    assert [tuple(i.shape) for i in images] == [(1, 128, 128)] * 2
    assert all(float(i.min()) >= 0 and float(i.max()) <= 1 for i in images)
    torch.testing.assert_close(generator.generate([condition(6)]).images[0], images[1], rtol=0, atol=1e-4)


def notebook_sr_input(images: torch.Tensor) -> torch.Tensor:
    """The notebook's cell 9, literally: ``to_tensor(to_grayscale(to_pil_image(i)))`` per image."""
    return torch.stack([to_tensor(to_grayscale(to_pil_image(i))) for i in images])


def test_sr_input_is_the_notebooks_8bit_pil_round_trip():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 24, 20, generator=gen)
    images[0, :, 0, 0] = torch.tensor([0.999, 0.999, 0.999])  # 254.745: truncated to 254, not rounded to 255
    images[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # PIL luma of (255, 0, 0): (255*19595 + 0x8000) >> 16 = 76
    ours = pil_gray_8bit(images)
    assert torch.equal(ours, notebook_sr_input(images))
    assert ours[0, 0, 0, 0] == torch.tensor(254 / 255) and ours[0, 0, 0, 1] == torch.tensor(76 / 255)
    float_luma = to_gray(images)
    assert 0 < (ours - float_luma).abs().max() <= 1.5 / 255  # what the 8-bit round trip changes
    assert torch.equal(pil_gray_8bit(images[:, :1]), notebook_sr_input(images[:, :1]))  # 1 channel: "L" directly


def reference_ddpm_sr(model: SR3UNet, low_unit: torch.Tensor, generators: list[torch.Generator], size: int, timesteps: int):
    """Cheff's CheffSRModel.sample(method='ddpm'), written from cheff/sr/{schedule,diffusor,sampler}.py: the
    cosine schedule's coefficients, then SR3Diffusor.p_sample from t = T-1 down to 0, one image at a time."""
    x = torch.linspace(0, timesteps, timesteps + 1)
    abar_cos = torch.cos(((x / timesteps) + 0.008) / (1 + 0.008) * math.pi * 0.5) ** 2
    abar_cos = abar_cos / abar_cos[0]
    betas = torch.clip(1 - (abar_cos[1:] / abar_cos[:-1]), 0.0001, 0.9999)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, dim=0)
    abar_prev = F.pad(abar[:-1], (1, 0), value=1.0)
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    log_var = torch.log(torch.maximum(post_var, torch.tensor(1e-20)))
    coef1 = betas * torch.sqrt(abar_prev) / (1.0 - abar)
    coef2 = (1.0 - abar_prev) * torch.sqrt(alphas) / (1.0 - abar)
    out = []
    for image, gen in zip(low_unit, generators, strict=True):
        sr = F.interpolate(image[None] * 2 - 1, size=(size, size), mode="bicubic", align_corners=False)
        img = torch.randn(sr.shape, generator=gen)
        for i in reversed(range(timesteps)):
            t = torch.full((1,), i, dtype=torch.long)
            eps = model(torch.cat([img, sr], dim=1), t)
            x_recon = (torch.sqrt(1.0 / abar[i]) * img - torch.sqrt(1.0 / abar[i] - 1) * eps).clamp(-1.0, 1.0)
            mean = coef1[i] * x_recon + coef2[i] * img
            noise = torch.randn(img.shape, generator=gen)
            img = mean if i == 0 else mean + (0.5 * log_var[i]).exp() * noise
        out.append(((img.clamp(-1, 1) + 1) / 2)[0])
    return torch.stack(out)


@torch.no_grad()
def test_ddpm_super_resolution_matches_the_original_step_by_step():
    model = randomize(SR3UNet(SR3Config(**TINY_SR)), 5)
    low = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    ours = super_resolve(model, low, sr3_ddpm_schedule(12), SampleNoise.from_seeds([3, 4]), size=32)
    reference = reference_ddpm_sr(model, low, [torch.Generator().manual_seed(s) for s in (3, 4)], 32, 12)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)  # batched convolutions round differently
    one = super_resolve(model, low[1:], sr3_ddpm_schedule(12), SampleNoise.from_seeds([4]), size=32)
    assert torch.equal(one, reference[1:])  # one image: the same float32 operations, bit for bit
    ddim = super_resolve(model, low, sr3_ddim_scheduler(12), SampleNoise.from_seeds([3, 4]), size=32, steps=3)
    assert (ddim - ours).abs().mean() > 1e-3  # the two samplers differ


@torch.no_grad()
def test_cheff_sr_stage_feeds_the_8bit_image_to_the_ddpm_sampler(setup, monkeypatch):
    manager, config, _, _ = setup
    sr_config = str(manager.root / "ddpm-sr.yaml")
    options = CheffOptions(original_config=config, steps=10, super_resolution=True, sr_size=32, sr_config=sr_config)
    generator = CheffGenerator("cheff", options, GeneratorContext(weights=manager))
    seen = {}
    decode = generator.model.decode
    monkeypatch.setattr(generator.model, "decode", lambda z: seen.setdefault("decoded", decode(z)))
    real_super_resolve = sr3.super_resolve

    def spy(model, images, sampler, noise, **kw):
        seen["states"] = [g.get_state() for g in noise.generators]
        return real_super_resolve(model, images, sampler, noise, **kw)

    monkeypatch.setattr(sr3, "super_resolve", spy)
    output = generator.generate([condition(7), condition(8, report_text="")])
    unit = (seen["decoded"].clamp(-1, 1) + 1) / 2
    generators = []
    for state in seen["states"]:
        gen = torch.Generator()
        gen.set_state(state)
        generators.append(gen)
    reference = reference_ddpm_sr(generator.sr, notebook_sr_input(unit), generators, 32, 12)
    torch.testing.assert_close(torch.stack(list(output.images)), reference, rtol=0, atol=1e-5)
    assert [tuple(i.shape) for i in output.images] == [(1, 32, 32)] * 2


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


class ReportBuilder:
    """Stands in for PreparedCases: text conditions carrying the case's MaCheX report."""

    available = frozenset({"text", "labels", "image"})

    def build(self, case: Case, sample_index: int, seed: int, *, reads=None) -> Condition:
        return Condition(
            case.case_id, sample_index, seed, case.labels, "", "", case.image_path, case.view, report_text=case.report_text
        )


def test_generate_writes_each_images_prompt_into_the_manifest(setup, tmp_path):
    manager, config, _, _ = setup
    cases = []
    for i, report in enumerate(["FINDINGS: Small left effusion. IMPRESSION: Effusion.", ""]):
        path = tmp_path / f"img{i}.png"
        save_png(path, quantize(np.random.default_rng(i).random((40, 40)).astype(np.float32)))
        cases.append(Case(f"case{i}", path, "10000000", f"5000000{i}", "PA", labels_of("Edema"), report_text=report))
    out = tmp_path / "run"
    cfg = config_from_dict(
        {
            "run": {"out": str(out), "resolution": 192, "seed": 7},
            "generators": {"cheff": {"type": "cheff", "original_config": config, "steps": 10}},
        }
    )
    summary = run_generator(
        cfg, "cheff", cfg.generators["cheff"], cases=cases, prepared=ReportBuilder(), weights=manager, progress=False
    )
    assert (summary.generated, summary.failed) == (2, 0)
    lines = [json.loads(line) for line in GeneratorDir(out, "cheff").manifest.read_text().splitlines()]
    inputs = {line["case_id"]: line["condition"]["inputs"] for line in lines}
    assert inputs == {
        "case0": {
            "prompt": "FINDINGS: Small left effusion. IMPRESSION: Effusion.",
            "prompt_rule": "machex",
            "prompt_field": "report_text",
            "tokens_truncated": 0,
        },
        "case1": {"prompt": "", "prompt_rule": "machex", "prompt_field": "fallback_prompt", "tokens_truncated": 0},
    }
