"""RoentGen end to end on tiny Stable Diffusion pipelines saved in the diffusers snapshot layout.

The v2 snapshot is laid out as the released save code leaves it: ``text_encoder/`` holds one
(base) CLIP encoder and ``text_encoder_and_tokenizer/`` another (the fine-tuned one); its
scheduler config is DDPM-style, unlike the official explicit PNDM settings.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tiny_ldm import randomize
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext, option_sources
from xreal_bench.generators.registry import generator_class
from xreal_bench.generators.roentgen import RoentGenGenerator, RoentGenOptions
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition, Demographics
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

SIZE = 64
ENCODER = "text_encoder_and_tokenizer"
#: StanfordMIMI/RoentGen-v2 roentgenv2/inference_code/run_inference.py:94-103, written out here on purpose.
OFFICIAL_PNDM = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
EFFUSION = tuple(int(name == "Pleural Effusion") for name in CHEXPERT_LABELS)
PATIENT = Demographics(age=74, sex="male", race="BLACK", source="mimic-iv", anchor_age=71)  # study 3 years after anchor


def tiny_text_encoder(vocab: dict[str, int], seed: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
    )
    return randomize(CLIPTextModel(config), seed)


def tiny_pipeline(folder: Path) -> Path:
    """A randomly initialised SD pipeline (CLIP text encoder, tokenizer from tiny vocab/merges files)."""
    chars = list("abcdefghijklmnopqrstuvwxyz.,-0123456789")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tok_dir = folder.parent / "tokenizer-src"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    unet = randomize(
        UNet2DConditionModel(
            sample_size=SIZE // 2,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
        ),
        2,
    )
    vae = randomize(
        AutoencoderKL(
            block_out_channels=(32, 64),
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            sample_size=SIZE,
        ),
        3,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=tiny_text_encoder(vocab, 1),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    return folder


def v2_snapshot(v1: Path, folder: Path) -> Path:
    """The v1 snapshot laid out as RoentGen-v2's save code leaves it: a second (fine-tuned) encoder
    and the tokenizer in text_encoder_and_tokenizer/, and a DDPM-style scheduler config."""
    shutil.copytree(v1, folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(v1 / "tokenizer"))
    tiny_text_encoder(tokenizer.get_vocab(), 11).save_pretrained(str(folder / ENCODER))
    tokenizer.save_pretrained(str(folder / ENCODER))
    shutil.rmtree(folder / "scheduler")
    DDPMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02).save_pretrained(str(folder / "scheduler"))
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "DDPMScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    manager = WeightsManager(root)
    tiny_pipeline(manager.path("roentgen-v1"))
    v2_snapshot(manager.path("roentgen-v1"), manager.path("roentgen-v2"))
    generator = make(manager, version="v1")
    yield manager, generator
    torch.set_num_threads(threads)


def make(manager, **options):
    options = {"steps": 4, "resolution": SIZE, **options}
    return RoentGenGenerator("roentgen", RoentGenOptions(**options), GeneratorContext(weights=manager))


def condition(seed: int, impression: str = "small left pleural effusion.", demographics: Demographics | None = None) -> Condition:
    return Condition(
        case_id=f"c{seed}",
        sample_index=0,
        seed=seed,
        labels=EFFUSION,
        prompt="Pleural Effusion",
        report="the configured report section (not what RoentGen reads)",
        impression=impression,
        demographics=demographics,
        image_path=Path("x"),
    )


def gray(images: torch.Tensor) -> torch.Tensor:
    return (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)


def reference_pipeline(snapshot: Path, encoder: str, tokenizer: str) -> StableDiffusionPipeline:
    """A plain diffusers pipeline with the given encoder and tokenizer folders and the official scheduler."""
    pipe = StableDiffusionPipeline.from_pretrained(
        str(snapshot),
        text_encoder=CLIPTextModel.from_pretrained(str(snapshot / encoder)),
        tokenizer=CLIPTokenizer.from_pretrained(str(snapshot / tokenizer)),
        scheduler=PNDMScheduler(**OFFICIAL_PNDM),
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_reference(pipe: StableDiffusionPipeline, prompt: str, seed: int) -> torch.Tensor:
    out = pipe(
        prompt=[prompt],
        negative_prompt=[""],
        num_inference_steps=4,
        guidance_scale=3.0,
        height=SIZE,
        width=SIZE,
        generator=[torch.Generator().manual_seed(seed)],
        output_type="pt",
    ).images
    return gray(out)


def test_declarations_defaults_and_citations():
    cls = generator_class("roentgen")
    assert cls.inputs == {"text", "labels"} and {a.name for a in cls.artifacts} == {"roentgen-v1", "roentgen-v2"}
    v1, v2 = RoentGenOptions(), RoentGenOptions(version="v2")
    assert (v1.steps, v1.effective_guidance, v1.effective_scheduler, v1.resolution) == (75, 4.0, "snapshot", 512)
    assert (v1.effective_rule.name, v1.effective_rule.template) == ("impression", "{text}")
    assert (v2.effective_guidance, v2.effective_scheduler, v2.text_encoder_source) == (3.0, "pndm", "auto")
    assert (v2.effective_rule.name, v2.effective_rule.template) == ("roentgen_v2", "{age} year old {race} {sex}. {text}")
    sources = option_sources(RoentGenOptions)
    assert all(sources.values()), [k for k, v in sources.items() if not v]
    assert "run_inference.py:94-103" in sources["scheduler"] and "models.py" in sources["text_encoder_source"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"prompt_template": "{weight} kg. {text}"},
            r"prompt_template: unknown or malformed field 'weight' \(fields: \{text\}, \{age\}, \{race\}, \{sex\}\)",
        ),
        ({"prompt_template": "{age} year old"}, "prompt_template: '{age} year old' has no {text}"),
        ({"prompt_rule": "report"}, "prompt_rule: unknown rule 'report' .known: auto, machex, impression, roentgen_v2"),
        ({"race": "white"}, r"race: expected capitals as in the v2 prompts \(WHITE, BLACK, ASIAN, HISPANIC\), got 'white'"),
        ({"sex": "F"}, "sex: expected one of female, male .the v2 prompts' words., got 'F'"),
        ({"prompt_format": "{impression}"}, "prompt_format: unknown key"),
    ],
)
def test_invalid_options_are_refused(table, message):
    with pytest.raises(ConfigError, match=message):
        build(RoentGenOptions, table, "bench.toml")


def test_v2_prompts_carry_each_patients_demographics_or_a_recorded_fallback():
    options = RoentGenOptions(version="v2")
    own = options.prompt(condition(1, demographics=PATIENT))
    assert own.text == "71 year old BLACK male. small left pleural effusion."
    assert own.record() == {
        "prompt": own.text,
        "prompt_rule": "roentgen_v2",
        "prompt_field": "impression",
        "demographics": "mimic-iv",
    }
    at_study = RoentGenOptions(version="v2", prompt_rule="roentgen_v2_age_at_study").prompt(condition(1, demographics=PATIENT))
    assert at_study.text == "74 year old BLACK male. small left pleural effusion." and at_study.demographics == "mimic-iv"
    partial = options.prompt(condition(1, demographics=Demographics(anchor_age=80, sex="male", source="mimic-iv")))
    assert partial.text == "80 year old WHITE male. small left pleural effusion."
    assert partial.demographics == "fallback (race WHITE)"
    nothing = RoentGenOptions(version="v2", age=50, race="ASIAN").prompt(condition(1, impression="  "))
    assert nothing.text == "50 year old ASIAN female. Pleural Effusion"
    assert (nothing.field, nothing.demographics) == ("labels", "fallback (age 50, race ASIAN, sex female)")
    assert nothing.notes == ("prompt from labels (impression empty)", "demographics: fallback (age 50, race ASIAN, sex female)")
    # v1 reads the impression alone; a custom template keeps the rule's chain
    assert RoentGenOptions().prompt(condition(1, demographics=PATIENT)).text == "small left pleural effusion."
    custom = RoentGenOptions(version="v2", prompt_template="{sex}, {age}: {text}").prompt(condition(1, demographics=PATIENT))
    assert custom.text == "male, 71: small left pleural effusion." and custom.rule == "roentgen_v2 (template set in the config)"


def test_batch_generation_and_per_sample_generators(setup):
    _, generator = setup
    batch = [condition(1), condition(2, impression=""), condition(3)]
    output = generator.generate(batch)
    images = output.images
    assert [tuple(i.shape) for i in images] == [(1, SIZE, SIZE)] * 3 and generator.resolution == SIZE
    assert all(float(i.min()) >= 0 and float(i.max()) <= 1 for i in images)
    assert output.notes[1] == ("prompt from labels (impression empty)",)
    assert [i["prompt"] for i in output.inputs] == [
        "small left pleural effusion.",
        "Pleural Effusion",
        "small left pleural effusion.",
    ]
    assert generator.encoder_source == "text_encoder"  # v1 snapshot: no text_encoder_and_tokenizer/
    assert isinstance(generator.pipe.scheduler, DDIMScheduler)  # v1 keeps the snapshot's scheduler
    alone = generator.generate([condition(3)]).images
    torch.testing.assert_close(alone[0], images[2], rtol=0, atol=1e-4)
    # the same as calling the pipeline directly with this sample's seeded generator
    direct = generator.pipe(
        prompt=["small left pleural effusion."],
        negative_prompt=[""],
        num_inference_steps=4,
        guidance_scale=4.0,
        height=SIZE,
        width=SIZE,
        generator=[torch.Generator().manual_seed(3)],
        output_type="pt",
    ).images
    torch.testing.assert_close(alone[0], gray(direct), rtol=0, atol=1e-5)


def test_v2_runs_the_encoder_and_tokenizer_of_text_encoder_and_tokenizer(setup):
    manager, _ = setup
    snapshot = manager.path("roentgen-v2")
    generator = make(manager, version="v2")
    assert generator.encoder_source == ENCODER and Path(generator.pipe.tokenizer.name_or_path) == snapshot / ENCODER
    assert generator.pipe.tokenizer.model_max_length == 77
    long = "small left pleural effusion and " * 4 + "no pneumothorax."
    output = generator.generate([condition(5, demographics=PATIENT), condition(6, impression=long)])
    prompt = "71 year old BLACK male. small left pleural effusion."
    long_prompt = f"65 year old WHITE female. {' '.join(long.split())}"
    cut = len(CLIPTokenizer.from_pretrained(str(snapshot / ENCODER))(long_prompt)["input_ids"]) - 77
    assert cut > 0
    assert output.inputs == (
        {
            "prompt": prompt,
            "prompt_rule": "roentgen_v2",
            "prompt_field": "impression",
            "demographics": "mimic-iv",
            "tokens_truncated": 0,
            "text_encoder": ENCODER,
        },
        {
            "prompt": long_prompt,
            "prompt_rule": "roentgen_v2",
            "prompt_field": "impression",
            "demographics": "fallback (age 65, race WHITE, sex female)",
            "tokens_truncated": cut,
            "text_encoder": ENCODER,
        },
    )
    official = run_reference(reference_pipeline(snapshot, ENCODER, ENCODER), prompt, 5)
    base = run_reference(reference_pipeline(snapshot, "text_encoder", "tokenizer"), prompt, 5)
    to_official = float((output.images[0] - official).abs().max())
    to_base = float((output.images[0] - base).abs().max())
    assert to_official < 1e-5 and to_base > 1e-3, (to_official, to_base)
    # text_encoder_source = "pipeline" loads text_encoder/ and reproduces the other reference
    pipeline_encoder = make(manager, version="v2", text_encoder_source="pipeline")
    assert pipeline_encoder.encoder_source == "text_encoder"
    again = pipeline_encoder.generate([condition(5, demographics=PATIENT)]).images[0]
    assert float((again - base).abs().max()) < 1e-5


def test_v2_scheduler_has_the_official_settings_whatever_the_snapshot_says(setup):
    manager, _ = setup
    snapshot_config = json.loads((manager.path("roentgen-v2") / "scheduler" / "scheduler_config.json").read_text())
    assert (snapshot_config["_class_name"], snapshot_config["beta_schedule"]) == ("DDPMScheduler", "linear")
    scheduler = make(manager, version="v2").pipe.scheduler
    assert isinstance(scheduler, PNDMScheduler)
    assert {k: scheduler.config[k] for k in OFFICIAL_PNDM} == OFFICIAL_PNDM
    torch.testing.assert_close(scheduler.betas, torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2)
    kept = make(manager, version="v2", scheduler="snapshot").pipe.scheduler
    assert isinstance(kept, DDPMScheduler) and float(kept.betas[-1]) == pytest.approx(0.02)


def test_protocol_names_prompt_encoder_folder_and_scheduler_without_loading(setup, tmp_path):
    manager, _ = setup
    steps = {
        s.key: s
        for s in RoentGenGenerator.protocol(
            RoentGenOptions(version="v2"), GeneratorContext(weights=manager), condition(1, demographics=PATIENT)
        )
    }
    assert steps["prompt"].value == "'71 year old BLACK male. small left pleural effusion.'"
    assert steps["prompt"].source == "case c1: text from impression; demographics mimic-iv"
    assert steps["text encoder"].value == f"{manager.path('roentgen-v2') / ENCODER} (CLIPTextModel + CLIPTokenizer, 77 tokens)"
    assert steps["scheduler"].value.startswith("PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear'")
    assert steps["version"].source == "set in the config (default 'v1')"
    assert "bf16" in steps["precision"].source and steps["precision"].value == "fp32 ([run].precision)"
    half = GeneratorContext(weights=manager, precision="bf16")
    assert {s.key: s.value for s in RoentGenGenerator.protocol(RoentGenOptions(), half)}["precision"] == (
        "fp32 ([run].precision bf16 applies on CUDA only)"
    )
    v1 = {s.key: s.value for s in RoentGenGenerator.protocol(RoentGenOptions(), GeneratorContext(weights=manager), None)}
    assert v1["text encoder"] == f"{manager.path('roentgen-v1')}/text_encoder and tokenizer (the snapshot has no {ENCODER}/)"
    assert v1["scheduler"] == "the snapshot's scheduler (scheduler/scheduler_config.json)" and "prompt" not in v1
    empty = WeightsManager(tmp_path)
    missing = {s.key: s.value for s in RoentGenGenerator.protocol(RoentGenOptions(version="v2"), GeneratorContext(weights=empty))}
    assert missing["text encoder"] == (
        f"{ENCODER}/ when the snapshot has it, else text_encoder/ and tokenizer/ (snapshot not found at {empty.path('roentgen-v2')})"
    )


def test_long_prompts_are_counted(setup, caplog):
    _, generator = setup
    long = "small left pleural effusion. " * 20
    before = generator.truncation.truncated
    with caplog.at_level(logging.WARNING):
        output = generator.generate([condition(4, impression=long)])
    assert generator.truncation.truncated == before + 1
    assert "exceed 77 tokens" in caplog.text
    assert output.inputs[0]["tokens_truncated"] == len(generator.pipe.tokenizer(long.strip())["input_ids"]) - 77


def test_missing_snapshot_or_encoder_folder(setup, tmp_path):
    manager, _ = setup
    with pytest.raises(
        UserFacingError, match=f"text_encoder_source = 'text_encoder_and_tokenizer' but the snapshot has no {ENCODER}/"
    ):
        make(manager, version="v1", text_encoder_source=ENCODER)
    with pytest.raises(MissingWeightsError, match=r"missing weights 'roentgen-v2'(.*\n)*.*gated"):
        make(WeightsManager(tmp_path), version="v2")
    with pytest.raises(MissingWeightsError, match="missing weights 'roentgen-v1'"):
        make(WeightsManager(tmp_path), version="v1")
