"""The sampler logic against hand computation: schedules, DDIM steps, XReal's blending,
guidance, per-sample noise, the soft anatomy mask and value-range conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.images import (
    cv2_cubic_resize,
    signed_to_unit,
    to_gray,
    unit_to_signed,
)
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.sampler import Blend, classifier_free_guidance, ddim_sample
from xreal_bench.generators.diffusion.schedules import (
    cosine_betas,
    ldm_ddim_scheduler,
    sr3_ddim_scheduler,
)
from xreal_bench.generators.xreal import anatomy_latent_mask

SHAPE = (3, 4, 4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hand_abar() -> np.ndarray:
    """LDM make_beta_schedule('linear', 1000, 0.0015, 0.0295) in float64."""
    betas = np.linspace(math.sqrt(0.0015), math.sqrt(0.0295), 1000) ** 2
    return np.cumprod(1.0 - betas)


def replay(seed: int, count: int) -> list[torch.Tensor]:
    """The first ``count`` draws of a sample's stream, as the sampler makes them."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((1, *SHAPE), generator=g)[0].double() for _ in range(count)]


def ddim_hand(z: torch.Tensor, eps: torch.Tensor, a: float, a_prev: float, eta: float, n: torch.Tensor | None) -> torch.Tensor:
    """LDM ``p_sample_ddim`` written out."""
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    x0 = (z - math.sqrt(1 - a) * eps) / math.sqrt(a)
    out = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma**2) * eps
    return out + sigma * n if n is not None else out


# ----------------------------------------------------------------------------- schedules and steps


def test_ldm_schedule_and_ddim_timesteps_match_the_ldm_sampler():
    scheduler = ldm_ddim_scheduler()
    abar = hand_abar()
    assert torch.equal(scheduler.alphas_cumprod, torch.tensor(abar, dtype=torch.float32))
    scheduler.set_timesteps(100)
    assert scheduler.timesteps.tolist() == list(range(991, 0, -10))  # 991, 981, ..., 1
    assert float(scheduler.final_alpha_cumprod) == pytest.approx(abar[0], rel=1e-7)  # the last step's "previous alpha"
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))


@pytest.mark.parametrize("t, eta", [(991, 1.0), (511, 1.0), (1, 1.0), (511, 0.0)])
def test_ddim_step_matches_hand_formula(t, eta):
    scheduler = ldm_ddim_scheduler()
    scheduler.set_timesteps(100)
    abar = hand_abar()
    a, a_prev = abar[t], (abar[t - 10] if t > 10 else abar[0])
    g = torch.Generator().manual_seed(t)
    z, eps, n = (torch.randn(1, *SHAPE, generator=g) for _ in range(3))
    got = scheduler.step(eps, torch.tensor(t), z, eta=eta, variance_noise=n if eta else None).prev_sample
    expected = ddim_hand(z.double(), eps.double(), a, a_prev, eta, n.double())
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_sr3_schedule_is_cheffs_cosine_schedule():
    s = 0.008
    x = np.linspace(0, 2000, 2001)
    abar = np.cos((x / 2000 + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1 - abar[1:] / abar[:-1], 1e-4, 0.9999)
    np.testing.assert_allclose(cosine_betas(2000).numpy(), betas, rtol=2e-4, atol=1e-6)
    assert cosine_betas(2000)[0] == pytest.approx(1e-4)  # the lower clip is active at the start
    scheduler = sr3_ddim_scheduler()
    scheduler.set_timesteps(100)
    assert scheduler.timesteps.tolist() == list(range(1980, -1, -20))  # no offset, down to 0
    assert float(scheduler.final_alpha_cumprod) == float(scheduler.alphas_cumprod[0])


# ----------------------------------------------------------------------------- noise streams


def test_sample_noise_rows_are_independent_streams():
    noise = SampleNoise.from_seeds([7, 8, 9])
    first, second = noise.randn(*SHAPE), noise.randn(*SHAPE)
    for row, seed in enumerate([7, 8, 9]):
        draws = replay(seed, 2)
        assert torch.equal(first[row].double(), draws[0]) and torch.equal(second[row].double(), draws[1])
    sub = SampleNoise.from_seeds([7, 8, 9]).subset([2])
    assert torch.equal(sub.randn(*SHAPE)[0].double(), replay(9, 1)[0])


def test_sampler_is_independent_of_batch_composition():
    def pointwise(z, t):
        return 0.1 * z + 0.01 * float(t) / 1000

    scheduler = ldm_ddim_scheduler()
    batch = ddim_sample(pointwise, scheduler, SampleNoise.from_seeds([3, 4, 5]), SHAPE, steps=10, eta=1.0)
    alone = ddim_sample(pointwise, scheduler, SampleNoise.from_seeds([4]), SHAPE, steps=10, eta=1.0)
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


# ----------------------------------------------------------------------------- blending


class Recorder:
    """Denoiser stub returning ``eps = scale * z`` and recording its inputs."""

    def __init__(self, scale: float = 0.0):
        self.scale, self.inputs = scale, []

    def __call__(self, z, t):
        self.inputs.append((int(t), z.clone()))
        return self.scale * z


def test_blend_with_zero_denoiser_masked_region_is_q_sample_with_the_same_noise():
    steps, blend_steps, seed = 10, 4, 11
    target = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1.0
    recorder = Recorder()
    final = ddim_sample(
        recorder,
        ldm_ddim_scheduler(),
        SampleNoise.from_seeds([seed]),
        SHAPE,
        steps=steps,
        eta=1.0,
        blend=Blend(target, mask, steps=blend_steps),
    )
    abar = hand_abar()
    draws = iter(replay(seed, 1 + blend_steps * 2 + (steps - blend_steps)))
    z, z0, m = next(draws), target[0].double(), mask[0].double()
    for i, (t, seen) in enumerate(recorder.inputs):
        assert t == 901 - 100 * i  # 10 steps: 901, 801, ..., 1
        if i < blend_steps:
            q = math.sqrt(abar[t]) * z0 + math.sqrt(1 - abar[t]) * next(draws)  # fresh noise every step
            z = q * m + (1 - m) * z
            torch.testing.assert_close(seen[0].double()[:, :2], q[:, :2], rtol=0, atol=1e-5)  # masked = q_sample(z0, t)
        torch.testing.assert_close(seen[0].double(), z, rtol=1e-6, atol=1e-5)
        a_prev = abar[t - 100] if t > 100 else abar[0]
        z = ddim_hand(z, torch.zeros_like(z), abar[t], a_prev, 1.0, next(draws))
    torch.testing.assert_close(final[0].double(), z, rtol=1e-6, atol=1e-5)


def test_pathology_pass_outside_the_box_follows_the_renoised_target():
    """Blending at every step: outside the box the final latent is the target re-noised to t=1 and
    taken through the last DDIM step only; inside it is generated."""
    steps, seed = 10, 5
    target = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    box = torch.zeros(1, 1, 4, 4)
    box[..., 1:3, 1:3] = 1.0
    denoise = Recorder(scale=0.1)
    final = ddim_sample(
        denoise,
        ldm_ddim_scheduler(),
        SampleNoise.from_seeds([seed]),
        SHAPE,
        steps=steps,
        eta=1.0,
        blend=Blend(target, 1.0 - box, steps=None),
    )
    draws = replay(seed, 1 + 2 * steps)
    blend_noise, variance_noise = draws[-2], draws[-1]  # the last step's two draws
    abar = hand_abar()
    z_in = math.sqrt(abar[1]) * target[0].double() + math.sqrt(1 - abar[1]) * blend_noise
    expected = ddim_hand(z_in, 0.1 * z_in, abar[1], abar[0], 1.0, variance_noise)
    outside = (1 - box[0, 0]).bool()
    torch.testing.assert_close(final[0].double()[:, outside], expected[:, outside], rtol=0, atol=1e-5)
    assert not torch.allclose(final[0].double()[:, ~outside], expected[:, ~outside], atol=1e-2)


# ----------------------------------------------------------------------------- guidance


class ContextUNet(torch.nn.Module):
    """UNet stub: eps = z * mean(context) (different for different prompts); counts calls and batch sizes."""

    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x, t, encoder_hidden_states, return_dict=False):
        self.batches.append(len(x))
        return (x * encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1),)


def test_classifier_free_guidance_arithmetic():
    eps_u, eps_c = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    assert classifier_free_guidance(eps_u, eps_c, 7.0).tolist() == [1.0 + 7 * 2.0, -2.0 + 7 * 2.5]
    assert torch.equal(classifier_free_guidance(eps_u, eps_c, 1.0), eps_c)

    unet, z = ContextUNet(), torch.ones(2, *SHAPE)
    cond = torch.stack([torch.full((5, 8), 2.0), torch.full((5, 8), 3.0)])
    uncond = torch.full((1, 5, 8), 0.5)
    eps = LatentDenoiser(unet, cond, uncond_context=uncond, guidance=7.0)(z, torch.tensor(11))
    assert unet.batches == [4]  # both halves in one call
    assert eps[:, 0, 0, 0].tolist() == pytest.approx([0.5 + 7 * (2.0 - 0.5), 0.5 + 7 * (3.0 - 0.5)])
    unet.batches.clear()
    eps = LatentDenoiser(unet, cond, uncond_context=uncond, guidance=1.0)(z, torch.tensor(11))
    assert unet.batches == [2] and eps[:, 0, 0, 0].tolist() == [2.0, 3.0]  # scale 1: conditional only
    with pytest.raises(ValueError, match="unconditional context"):
        LatentDenoiser(unet, cond, guidance=3.0)


# ----------------------------------------------------------------------------- masks and images


def cubic(x: float, a: float = -0.75) -> float:
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0


def test_cv2_cubic_resize_weights_by_hand():
    # 4x downscale: output pixel (i, j) reads input rows/cols 4i..4i+3 at distances 1.5, 0.5, 0.5, 1.5
    weights = [cubic(1.5), cubic(0.5), cubic(0.5), cubic(1.5)]
    assert weights == pytest.approx([-0.09375, 0.59375, 0.59375, -0.09375])
    for dy, dx in [(1, 2), (0, 1), (0, 3), (3, 3)]:
        x = torch.zeros(1, 1, 16, 16)
        x[0, 0, 4 + dy, 8 + dx] = 1.0
        out = cv2_cubic_resize(x, 4)
        assert float(out[0, 0, 1, 2]) == pytest.approx(weights[dy] * weights[dx], abs=1e-7)
        assert float(out.abs().sum() - out[0, 0, 1, 2].abs()) == pytest.approx(0.0, abs=1e-7)


def test_anatomy_soft_mask_values():
    label = torch.zeros(1, 1, 16, 16)
    label[0, 0, 4 + 1, 8 + 2] = 3  # positive weight product -> organ cell
    label[0, 0, 8 + 0, 0 + 1] = 2  # negative product (-0.094 x 0.594) -> soft
    label[0, 0, 12 + 3, 12 + 0] = 4  # (-) x (-) -> positive -> organ cell
    mask = anatomy_latent_mask(label, 4, 0.2)
    expected = torch.full((4, 4), 0.2)
    expected[1, 2] = expected[3, 3] = 1.0
    assert torch.equal(mask[0, 0], expected)
    solid = torch.zeros(1, 1, 16, 16)
    solid[..., 4:12, 4:12] = 1
    assert torch.equal(anatomy_latent_mask(solid, 4, 0.3)[0, 0, 1:3, 1:3], torch.ones(2, 2))
    assert set(anatomy_latent_mask(solid, 4, 0.3).unique().tolist()) == {0.30000001192092896, 1.0}


def test_value_range_conversions():
    x = torch.tensor([0.0, 0.25, 1.0])
    assert unit_to_signed(x).tolist() == [-1.0, -0.5, 1.0]
    assert torch.equal(signed_to_unit(unit_to_signed(x)), x)
    assert signed_to_unit(torch.tensor([-3.0, 2.0])).tolist() == [0.0, 1.0]  # clamped like the originals
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    pil_gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64)  # how the harness reads RGB files
    ours = to_gray(torch.from_numpy(rgb).permute(2, 0, 1)[None].double())[0, 0].numpy()
    assert np.abs(ours - pil_gray).max() <= 0.5 + 1e-9  # PIL rounds to integers
    assert to_gray(torch.ones(1, 3, 2, 2)).allclose(torch.ones(1, 1, 2, 2))
