"""ChexGen on tiny random files in the released layouts: a ``.pth`` with ``state_dict_ema`` (keys
``module.``-prefixed as DDP saves them), a tiny T5 encoder snapshot and a tiny SD VAE snapshot.
The sampling is checked against a reference written here from the released code: a functional
DiT over the raw state dict, each sample attending only to its own packed tokens, and the IDDPM
arrays built whole (gaussian_diffusion.py, respace.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_zoo import CHEXGEN_HEADS as HEADS
from tiny_zoo import CHEXGEN_WIDTH as WIDTH
from tiny_zoo import chexgen_weights, dit_state, save_pth

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.chexgen import ChexGenGenerator, ChexGenOptions, clean_caption
from xreal_bench.generators.registry import generator_class
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition, Demographics
from xreal_bench.weights import MissingWeightsError, WeightsManager


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    m = WeightsManager(tmp_path_factory.mktemp("weights"))
    chexgen_weights(m)
    yield m
    torch.set_num_threads(threads)


def make(m: WeightsManager, **options) -> ChexGenGenerator:
    return ChexGenGenerator("chexgen", ChexGenOptions(attention_heads=HEADS, steps=3, **options), GeneratorContext(weights=m))


def condition(seed: int, impression: str = "Small left pleural effusion.", mask: np.ndarray | None = None, **kw) -> Condition:
    labels = tuple(int(n == "Pleural Effusion") for n in CHEXPERT_LABELS)
    return Condition(
        case_id=f"c{seed}", sample_index=0, seed=seed, labels=labels, prompt="", report="", impression=impression,
        image_path=Path("x"), pathology_mask=mask, **kw,
    )  # fmt: skip


# ---- the reference, from the released code -------------------------------------------------


def linear(s, name, x):
    return F.linear(x, s[name + ".weight"], s[name + ".bias"])


def ref_attention(q, k, v):  # (N, H, D) per sample
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
    return a @ v


def ref_block(s, p, x, y, t6):
    """block.py PixArtMSBlock.forward for one sample: x (N, C), y (L_valid, C), t6 (6C)."""
    n, c = x.shape
    mod = s[p + "shift_scale_gate_table"] + t6.reshape(6, c)
    sh1, sc1, g1, sh2, sc2, g2 = mod
    h = F.layer_norm(x, (c,), eps=1e-6) * (1 + sc1) + sh1
    qkv = linear(s, p + "attn.qkv", h).reshape(n, 3, HEADS, c // HEADS).permute(1, 2, 0, 3)
    x = x + g1 * linear(s, p + "attn.proj", ref_attention(*qkv).transpose(0, 1).reshape(n, c))
    q = linear(s, p + "cross_attn.q_linear", x).reshape(n, HEADS, -1).transpose(0, 1)
    k, v = linear(s, p + "cross_attn.kv_linear", y).reshape(len(y), 2, HEADS, -1).permute(1, 2, 0, 3)
    x = x + linear(s, p + "cross_attn.proj", ref_attention(q, k, v).transpose(0, 1).reshape(n, c))
    h = F.layer_norm(x, (c,), eps=1e-6) * (1 + sc2) + sh2
    return x + g2 * linear(s, p + "mlp.fc2", F.gelu(linear(s, p + "mlp.fc1", h), approximate="tanh"))


def ref_dit(s, x, t, text, length, control=None, pos_scale=2.0):
    """dit.py DiT.forward / dit_control.py ControlT2IDiT.forward for one sample (C, H, W)."""
    latent = x.shape[-1]
    tokens = F.conv2d(x[None], s["x_embedder.proj.weight"], s["x_embedder.proj.bias"], stride=2).flatten(2)[0].T
    tokens = tokens + s["pos_embed"][0]
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    arg = float(t) * freqs
    temb = linear(s, "t_embedder.mlp.2", F.silu(linear(s, "t_embedder.mlp.0", torch.cat([arg.cos(), arg.sin()]))))
    t6 = linear(s, "t_block.1", F.silu(temb))
    y = linear(s, "y_embedder.y_proj.fc2", F.gelu(linear(s, "y_embedder.y_proj.fc1", text[:length]), approximate="tanh"))
    depth = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    if control is None:
        for i in range(depth):
            tokens = ref_block(s, f"blocks.{i}.", tokens, y, t6)
    else:
        grid = latent // 2
        gh = np.arange(grid, dtype=np.float64) / (grid / grid) / pos_scale
        pos = np.concatenate([sincos(WIDTH // 2, np.tile(gh, grid)), sincos(WIDTH // 2, np.repeat(gh, grid))], 1)
        c = F.conv2d(control[None], s["x_embedder.proj.weight"], s["x_embedder.proj.bias"], stride=2).flatten(2)[0].T
        c = c + torch.tensor(pos, dtype=torch.float32)
        tokens = ref_block(s, "blocks.0.", tokens, y, t6)
        for i in range(1, 14):
            p = f"controlnet.{i - 1}."
            c = ref_block(s, p + "copied_block.", tokens + linear(s, p + "before_proj", c) if i == 1 else c, y, t6)
            tokens = ref_block(s, f"blocks.{i}.", tokens + linear(s, p + "after_proj", c), y, t6)
    shift, scale = s["final_layer.shift_scale_table"] + temb
    out = linear(s, "final_layer.linear", F.layer_norm(tokens, (WIDTH,), eps=1e-6) * (1 + scale) + shift)
    g = latent // 2
    return torch.einsum("hwpqc->chpwq", out.reshape(g, g, 2, 2, 8)).reshape(8, latent, latent)


def sincos(dim, pos):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], 1)


def ref_schedule(steps):
    """create_diffusion(str(steps)): linear betas, respaced, arrays as GaussianDiffusion builds them."""
    base = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    stride = 999 / (steps - 1)
    kept = sorted({round(i * stride) for i in range(steps)})
    last, betas = 1.0, []
    for i in kept:
        betas.append(1 - base[i] / last)
        last = base[i]
    betas = np.array(betas)
    ac = np.cumprod(1 - betas)
    prev = np.append(1.0, ac[:-1])
    post = betas * (1 - prev) / (1 - ac)
    return {
        "t": kept, "recip": np.sqrt(1 / ac), "recipm1": np.sqrt(1 / ac - 1), "c1": betas * np.sqrt(prev) / (1 - ac),
        "c2": (1 - prev) * np.sqrt(1 - betas) / (1 - ac), "minlog": np.log(np.append(post[1], post[1:])), "maxlog": np.log(betas),
    }  # fmt: skip


def reference_sample(gen, s, prompt, seed, guidance, mask=None):
    """One image as the released sampler makes it, with this suite's per-image generator."""
    g = torch.Generator().manual_seed(seed)
    side = gen.options.resolution
    x = torch.randn(4, side // 8, side // 8, generator=g)
    text, keep, _ = gen.encode_text([gen.options.prompt(condition(seed)).text if prompt is None else prompt])
    length = int(keep[0].sum())
    control = None
    if mask is not None:
        img = F.interpolate(
            torch.tensor(mask, dtype=torch.float32)[None, None], size=(side, side), mode="bilinear", antialias=True
        )
        dist = gen.vae.encode((img * 2 - 1).expand(-1, 3, -1, -1)).latent_dist
        control = ((dist.mean + dist.std * torch.randn(dist.mean.shape[1:], generator=g)) * 0.18215)[0]
    sch = ref_schedule(gen.options.steps)
    null = s["y_embedder.y_embedding"]
    for i in reversed(range(len(sch["t"]))):
        t = sch["t"][i]
        cond = ref_dit(s, x, t, text[0], length, control)
        if control is None:
            unc = ref_dit(s, x, t, null, length)
            eps3 = unc[:3] + guidance * (cond[:3] - unc[:3])
            cond = torch.cat([eps3, cond[3:]])
        eps, var = cond[:4], cond[4:]
        f = {k: torch.tensor(sch[k][i], dtype=torch.float64).float() for k in sch if k != "t"}.__getitem__
        logv = (var + 1) / 2 * f("maxlog") + (1 - (var + 1) / 2) * f("minlog")
        x0 = f("recip") * x - f("recipm1") * eps
        noise = torch.randn(x.shape, generator=g)
        x = f("c1") * x0 + f("c2") * x + (i != 0) * torch.exp(0.5 * logv) * noise
    img = (gen.vae.decode(x[None] / 0.18215).sample.clamp(-1, 1) + 1) / 2
    return (img[0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)


# ---- tests ---------------------------------------------------------------------------------


def test_registered_with_inputs_and_artifacts():
    cls = generator_class("chexgen")
    assert cls is ChexGenGenerator and cls.inputs == {"text", "labels", "pathology"}
    names = [a.name for a in cls.required_artifacts(ChexGenOptions(checkpoint="mask"))]
    assert names == ["chexgen-mask", "t5-v1_1-xxl", "sd-vae-ft-ema"]


@torch.no_grad()
def test_text_sampling_matches_the_reference_and_is_batch_independent(manager):
    gen = make(manager, checkpoint="256")
    state = {k.removeprefix("module."): v for k, v in torch.load(manager.path("chexgen-256"))["state_dict_ema"].items()}
    prompts = ["Small left pleural effusion.", "Moderate cardiomegaly."]
    out = gen.generate([condition(5, prompts[0]), condition(6, prompts[1])])
    assert out.images[0].shape == (1, 256, 256)
    for image, prompt, seed in zip(out.images, prompts, (5, 6), strict=True):
        expected = reference_sample(gen, state, prompt, seed, 4.0)
        assert torch.allclose(image[0], expected, atol=2e-5), (image[0] - expected).abs().max()
    alone = gen.generate([condition(6, prompts[1])])
    assert torch.allclose(alone.images[0], out.images[1], atol=1e-6)
    assert out.inputs[0]["prompt"] == prompts[0] and out.inputs[0]["tokens_truncated"] == 0


@torch.no_grad()
def test_mask_variant_reads_the_pathology_mask(manager):
    gen = make(manager, checkpoint="mask")
    state = {k.removeprefix("module."): v for k, v in torch.load(manager.path("chexgen-mask"))["state_dict_ema"].items()}
    mask = np.zeros((64, 64), bool)
    mask[10:30, 5:25] = True
    image = gen.generate([condition(3, mask=mask)]).images[0][0]
    base = {k.removeprefix("base_model."): v for k, v in state.items()}
    expected = reference_sample(gen, {**base, **state}, "Small left pleural effusion.", 3, 0.0, mask)
    assert torch.allclose(image, expected, atol=2e-5), (image - expected).abs().max()
    other = gen.generate([condition(3, mask=~mask)])
    assert (other.images[0][0] - image).abs().max() > 1e-3
    empty = gen.generate([condition(3)])
    assert empty.notes[0] == ("no pathology mask: an empty mask was used",)


def test_demographic_prompt_format():
    o = ChexGenOptions(checkpoint="512-demographics")
    patient = Demographics(age=74, sex="male", race="BLACK", source="mimic-iv")
    assert o.prompt(condition(1, demographics=patient)).text == "sex:Male, age:74.0, race:Black. Small left pleural effusion."
    fallback = o.prompt(condition(1))
    assert fallback.text == "sex:Male, age:65.0, race:White. Small left pleural effusion."
    assert "fallback" in fallback.demographics
    assert not any("outside the groups" in note for note in fallback.notes)
    hispanic = o.prompt(condition(1, demographics=Demographics(age=40, sex="female", race="HISPANIC", source="mimic-iv")))
    assert hispanic.text == "sex:Female, age:40.0, race:Hispanic. Small left pleural effusion."
    assert hispanic.notes == ("race Hispanic is outside the groups ChexGen was fine-tuned with (White, Asian, Black)",)


def test_caption_cleaning_as_released():
    assert clean_caption("Sex:Male, age:71.0, race:Black. Moderate cardiomegaly (2x3 cm)...") == (
        "sex:male, age:71.0, race:black. moderate cardiomegaly cm"
    )


def test_missing_checkpoint_names_file_and_how_to_get_it(manager, tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        make(WeightsManager(tmp_path), checkpoint="512-demographics")
    text = str(err.value)
    assert "finetuned_demographic_impression_512.pth" in text and str(tmp_path) in text and "PhysioNet" in text


def test_wrong_layout_or_resolution_is_refused(manager, tmp_path):
    m = WeightsManager(tmp_path)
    for name in ("t5-v1_1-xxl", "sd-vae-ft-ema"):
        m.path(name).parent.mkdir(parents=True, exist_ok=True)
        m.path(name).symlink_to(manager.path(name))
    save_pth(m.path("chexgen-512-impression"), dit_state(2, 32, 0))  # a 256 px network
    with pytest.raises(UserFacingError, match="latent 32 px, but checkpoint '512-impression' samples at 512 px"):
        make(m)
    state = dit_state(2, 64, 0)
    del state["blocks.1.mlp.fc2.bias"]
    save_pth(m.path("chexgen-512-impression"), state)
    with pytest.raises(UserFacingError, match=r"(?s)not a ChexGen '512-impression' checkpoint.*blocks.1.mlp.fc2.bias"):
        make(m)


def test_protocol_without_weights():
    steps = ChexGenGenerator.protocol(ChexGenOptions(checkpoint="mask"), GeneratorContext(), condition(1))
    by_key = {s.key: s for s in steps}
    assert by_key["guidance"].value.startswith("none") and "dit_control.py:142-145" in by_key["guidance"].source
    assert "respaced to 100" in by_key["sampler"].value


def test_t5_tokenizer_loads_from_the_released_spiece_model_layout(tmp_path):
    import json

    import sentencepiece as spm

    from xreal_bench.generators.chexgen import load_t5_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["small left pleural effusion", "moderate cardiomegaly", "heart size is normal"] * 40))
    folder = tmp_path / "t5-v1_1-xxl"
    folder.mkdir()
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=24, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        minloglevel=3,
    )  # fmt: skip
    (folder / "spiece.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    assert not (folder / "tokenizer.json").exists()  # DeepFloyd/t5-v1_1-xxl ships spiece.model only
    tokenizer = load_t5_tokenizer(folder)
    reference = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    text = "moderate left pleural effusion"
    assert tokenizer(text).input_ids == [*reference.encode(text), 1]  # the pieces, then </s>
