"""RadEdit end to end on tiny random snapshots in the released layouts.

- ``radedit/radedit/unet/``: a diffusers UNet2DConditionModel (as ``microsoft/radedit``);
- ``radedit/sdxl-vae/``: an AutoencoderKL with the SDXL VAE's scaling factor and ``force_upcast``;
- ``radedit/BiomedVLP-BioViL-T/``: a CXR-BERT checkpoint as the hub holds it — ``config.json`` of model type
  ``cxr-bert`` with its ``auto_map``, ``pytorch_model.bin`` with ``bert.*``, ``cls.*`` (masked-LM head),
  ``cls_projection_head.*`` and the old ``position_ids`` buffer, a WordPiece ``vocab.txt`` and a
  ``tokenizer_config.json`` naming ``CXRBertTokenizer``.

The reference below is written out here: the prompt through a ``BertForMaskedLM`` holding the whole checkpoint
(what the remote ``CXRBertModel`` runs; its ``hidden_states[-1]`` is what the pipeline feeds the UNet), the
released DDIM settings, classifier-free guidance step by step, and the SDXL VAE decode.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from tiny_zoo import BERT_SPECIAL as SPECIAL
from tiny_zoo import BERT_WORDS as WORDS
from tiny_zoo import BIOVIL_WIDTH as WIDTH
from tiny_zoo import RADEDIT_SIZE as SIZE
from tiny_zoo import SDXL_SCALING, biovil_snapshot, radedit_weights
from transformers import BertConfig, BertForMaskedLM

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext, option_sources
from xreal_bench.generators.radedit import RadEditGenerator, RadEditOptions
from xreal_bench.generators.registry import generator_class
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

STEPS = 3
EFFUSION = tuple(int(name == "Pleural Effusion") for name in CHEXPERT_LABELS)
#: The released DDIM scheduler (Raman1121/CheXGenBench tools/generate_data_common.py:100-106), written out on purpose.
RELEASED_DDIM = {
    "beta_schedule": "linear",
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    manager = WeightsManager(tmp_path_factory.mktemp("weights"))
    radedit_weights(manager)
    yield manager, make(manager)
    torch.set_num_threads(threads)


def make(manager, **options):
    options = {"steps": STEPS, "resolution": SIZE, **options}
    return RadEditGenerator("radedit", RadEditOptions(**options), GeneratorContext(weights=manager))


def condition(seed: int, impression: str = "small left pleural effusion.") -> Condition:
    return Condition(
        case_id=f"c{seed}",
        sample_index=0,
        seed=seed,
        labels=EFFUSION,
        prompt="Pleural Effusion",
        report="the configured report section (not what RadEdit reads)",
        impression=impression,
        image_path=Path("x"),
    )


@torch.no_grad()
def reference(manager: WeightsManager, prompt: str, seed: int, guidance: float = 7.5) -> torch.Tensor:
    """RadEdit's sampling written out: CXR-BERT hidden_states[-1] of the 128-token padded prompt (no mask),
    DDIM trailing, CFG against '', SDXL VAE decode, luma."""
    folder = manager.path("biovil-t")
    mlm = BertForMaskedLM(BertConfig(**json.loads((folder / "config.json").read_text())))
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    mlm.load_state_dict({k: v for k, v in state.items() if not k.startswith("cls_projection_head.")}, strict=False)
    mlm.eval()

    def encode(text: str) -> torch.Tensor:
        # WordPiece by hand: every word of the test prompts is in the vocabulary; [CLS] ... [SEP] then [PAD] to 128
        words = [len(SPECIAL) + WORDS.index(w) for w in text.lower().replace(".", " .").split()]
        ids = torch.tensor([[2, *words, 3] + [0] * (126 - len(words))])
        return mlm(input_ids=ids, output_hidden_states=True).hidden_states[-1]

    context = torch.cat([encode(""), encode(prompt)])
    unet = UNet2DConditionModel.from_pretrained(str(manager.path("radedit-unet")), subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(str(manager.path("sdxl-vae"))).eval()
    scheduler = DDIMScheduler(**RELEASED_DDIM)
    scheduler.set_timesteps(STEPS)
    latents = torch.randn((1, 4, SIZE // 2, SIZE // 2), generator=torch.Generator().manual_seed(seed))
    for t in scheduler.timesteps:
        eps_uncond, eps_text = unet(torch.cat([latents] * 2), t, encoder_hidden_states=context).sample.chunk(2)
        latents = scheduler.step(eps_uncond + guidance * (eps_text - eps_uncond), t, latents).prev_sample
    rgb = (vae.decode(latents / SDXL_SCALING).sample / 2 + 0.5).clamp(0, 1)
    return (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)


def test_declarations_defaults_and_citations():
    cls = generator_class("radedit")
    assert cls is RadEditGenerator and cls.inputs == {"text", "labels"}
    assert [(a.name, a.path, a.hub_id) for a in cls.artifacts] == [
        ("radedit-unet", "radedit/radedit", "microsoft/radedit"),
        ("sdxl-vae", "radedit/sdxl-vae", "stabilityai/sdxl-vae"),
        ("biovil-t", "radedit/BiomedVLP-BioViL-T", "microsoft/BiomedVLP-BioViL-T"),
    ]
    assert "research use only" in cls.artifacts[0].license
    o = RadEditOptions()
    assert (o.steps, o.guidance, o.prompt_rule, o.negative_prompt, o.resolution) == (100, 7.5, "impression", "", 512)
    sources = option_sources(RadEditOptions)
    assert all(sources.values()), [k for k, v in sources.items() if not v]
    assert "generate_data_common.py:316-320" in sources["steps"] and "generate_data_common.py:316-320" in sources["guidance"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"prompt_rule": "roentgen_v2"}, "prompt_rule: 'roentgen_v2' adds demographics, which RadEdit was not trained with"),
        ({"prompt_rule": "report"}, "prompt_rule: unknown rule 'report' .known: machex, impression"),
        ({"resolution": 500}, "resolution: expected a multiple of 8 >= 64, got 500"),
        ({"guidance": -1.0}, r"guidance: expected >= 0 \(1 = none\), got -1.0"),
        ({"mode": "edit"}, "mode: unknown key"),
    ],
)
def test_invalid_options_are_refused(table, message):
    with pytest.raises(ConfigError, match=message):
        build(RadEditOptions, table, "bench.toml")


def test_sampling_matches_the_reference_written_out_step_by_step(setup):
    manager, generator = setup
    assert generator.text.encoder.config.hidden_size == WIDTH and generator.text.tokenizer.model_max_length == 128
    assert {k: generator.pipe.scheduler.config[k] for k in RELEASED_DDIM} == RELEASED_DDIM
    torch.testing.assert_close(generator.pipe.scheduler.betas, torch.linspace(0.0001, 0.02, 1000))
    output = generator.generate([condition(7)])
    expected = reference(manager, "small left pleural effusion.", 7)
    assert tuple(output.images[0].shape) == (1, SIZE, SIZE)
    assert float((output.images[0] - expected).abs().max()) < 1e-5
    # guidance matters: the reference at guidance 1 is another image
    assert float((output.images[0] - reference(manager, "small left pleural effusion.", 7, guidance=1.0)).abs().max()) > 1e-3


def test_batches_are_per_image_seeded_and_record_their_prompts(setup):
    _, generator = setup
    output = generator.generate([condition(1), condition(2, impression=""), condition(3)])
    images = output.images
    assert [tuple(i.shape) for i in images] == [(1, SIZE, SIZE)] * 3 and generator.resolution == SIZE
    assert all(0.0 <= float(i.min()) and float(i.max()) <= 1.0 for i in images)
    assert float((images[0] - images[2]).abs().max()) > 1e-3  # other seed, same prompt: another image
    assert output.notes == ((), ("prompt from labels (impression empty)",), ())
    assert output.inputs[1] == {
        "prompt": "Pleural Effusion",
        "prompt_rule": "impression",
        "prompt_field": "labels",
        "tokens_truncated": 0,
    }
    alone = generator.generate([condition(3)]).images[0]
    torch.testing.assert_close(alone, images[2], rtol=0, atol=1e-4)


def test_long_prompts_are_cut_at_128_tokens_and_counted(setup, caplog):
    _, generator = setup
    long = "small left pleural effusion . " * 30  # 150 words + [CLS] [SEP]
    with caplog.at_level(logging.WARNING):
        output = generator.generate([condition(4, impression=long)])
    assert output.inputs[0]["tokens_truncated"] == 152 - 128
    assert "exceed 128 tokens (longest 152)" in caplog.text


def test_protocol_without_loading(tmp_path):
    steps = {
        s.key: s
        for s in RadEditGenerator.protocol(RadEditOptions(), GeneratorContext(weights=WeightsManager(tmp_path)), condition(1))
    }
    assert steps["prompt"].value == "'small left pleural effusion.'" and steps["prompt"].source == "case c1: text from impression"
    assert steps["scheduler"].value == (
        "DDIMScheduler(beta_schedule='linear', clip_sample=False, prediction_type='epsilon', timestep_spacing='trailing', "
        "steps_offset=1)"
    )
    assert "no attention mask" in steps["text encoder"].value and "modelling_cxrbert.py" in steps["text encoder"].source
    assert steps["editing mode"].value == "not offered"
    assert steps["steps"].source.startswith("Raman1121/CheXGenBench tools/generate_data_common.py:316-320")


def test_missing_snapshot_names_the_file_and_where_to_get_it(tmp_path):
    manager = WeightsManager(tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        make(manager)
    message = str(info.value)
    assert f"folder not found: {manager.path('radedit-unet')}" in message
    assert "huggingface.co/microsoft/radedit (gated" in message and "research use only" in message
    assert "xreal-bench weights fetch radedit-unet" in message


def test_broken_or_mismatched_text_encoder_is_refused(setup, tmp_path):
    manager, _ = setup
    other = WeightsManager(tmp_path / "w")
    for name in ("radedit-unet", "sdxl-vae"):
        other.path(name).parent.mkdir(parents=True, exist_ok=True)
        other.path(name).symlink_to(manager.path(name), target_is_directory=True)
    biovil_snapshot(other.path("biovil-t"), drop="bert.encoder.layer.1.output.dense.weight")
    with pytest.raises(
        UserFacingError,
        match=r"cannot load the BioViL-T text encoder from (.|\n)*Missing key\(s\) in state_dict: \"encoder\.layer\.1\.output\.dense\.weight\"",
    ):
        make(other)
    shutil.rmtree(other.path("biovil-t"))
    biovil_snapshot(other.path("biovil-t"), width=48)
    with pytest.raises(UserFacingError, match="is 48 wide but the UNet attends to 32-wide contexts"):
        make(other)
