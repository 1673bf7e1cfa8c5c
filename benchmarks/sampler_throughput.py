"""Throughput of the diffusion adapters and the overhead of their sampler.

Prints, per adapter, images/s with batch 1 and batch 8 (``--batch``) and the batching speed-up; and, per
sampler configuration, the time per denoising step of the adapters' DDIM loop
(:func:`xreal_bench.generators.diffusion.sampler.ddim_sample` with :class:`LatentDenoiser`: blending,
guidance, per-sample noise, the diffusers scheduler step) against a bare loop of the same UNet
calls, as a ratio (target: overhead <= 5 %). The generic ``diffusers`` adapter (on a Stable Diffusion 1.x
pipeline) is timed against the bare pipeline call with the same prompts and per-image generators, per
denoising step (target: overhead <= 5 %).

The networks are RANDOMLY INITIALISED: no weights are needed and none are loaded (the weights
loaders are replaced for the run), which is fine for speed — the arithmetic is the same as with
the real weights. Default: the released architectures at tiny widths on the CPU. ``--device cuda
--full-size`` uses the released sizes (XReal/Cheff/ControlNet 256 px, RoentGen 512 px) in fp16.

    python benchmarks/sampler_throughput.py                       # tiny, CPU, 1 thread
    python benchmarks/sampler_throughput.py --device cuda --full-size --steps 20
    python benchmarks/sampler_throughput.py --smoke               # 2 steps, batches 1 and 2: checks that it runs
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.precision import DTYPES
from xreal_bench.types import Box, Condition

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cardiomegaly", "edema", "pleural", "effusion", "large", "right", "."]


# ----------------------------------------------------------------------------- random models


def random_ldm(original: dict[str, Any], device: torch.device, dtype: torch.dtype, controlnet: bool):
    """A LatentDiffusionModel with random weights (initialised directly on the device)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import (
        LDMBertConfig,
        LDMBertModel,
    )

    from xreal_bench.generators.diffusion import conversion
    from xreal_bench.generators.diffusion.latent_models import LatentDiffusionModel

    with torch.device(device):
        unet = UNet2DConditionModel(**conversion.unet_config(original)).eval()
        vae = AutoencoderKL(**conversion.vae_config(original)).eval()
        text = LDMBertModel(LDMBertConfig(**conversion.text_encoder_config(original))).eval()
        control = None
        if controlnet:
            config = conversion.component_config("controlnet", original)
            fresh = ControlNetModel(**{k: v for k, v in config.items() if not k.startswith("_")})
            control = conversion.build_module("controlnet", config, fresh.state_dict(), "random")  # applies the hint downsampling
    return LatentDiffusionModel(original, unet, vae, text, control, oc.scale_factor(original), device, dtype)


def random_sd_pipeline(size: int, full: bool, device: torch.device, dtype: torch.dtype, folder: Path):
    """A Stable Diffusion 1.x pipeline with random weights (SD 1.5 sizes with ``full``)."""
    import json

    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz.,- ")
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    width = 320 if full else 32
    with torch.device(device):
        text = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408 if full else len(vocab),
                hidden_size=768 if full else 32,
                intermediate_size=3072 if full else 64,
                num_hidden_layers=12 if full else 2,
                num_attention_heads=12 if full else 4,
                max_position_embeddings=77,
                bos_token_id=49406 if full else vocab["<|startoftext|>"],
                eos_token_id=49407 if full else vocab["<|endoftext|>"],
            )
        )
        unet = UNet2DConditionModel(
            sample_size=size // 8,
            block_out_channels=(width, 2 * width, 4 * width, 4 * width),
            layers_per_block=2,
            cross_attention_dim=768 if full else 32,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512) if full else (32, 32, 32, 32),
            latent_channels=4,
            layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            sample_size=size,
        )
    for module in (text, unet, vae):
        torch.nn.Module.to(module, dtype=dtype)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# ----------------------------------------------------------------------------- adapters with random weights


@contextlib.contextmanager
def random_weights(full: bool, device: torch.device, dtype: torch.dtype, folder: Path, sd_size: int):
    """Replace the weights loaders so the real adapter code runs on random networks."""
    from xreal_bench.generators.diffusion import latent_models

    vocab_dir = folder / "bert"
    vocab_dir.mkdir(exist_ok=True)
    (vocab_dir / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    sd_dir = folder / "sd"
    sd_dir.mkdir(exist_ok=True)

    def fake_require(context, artifacts):
        return {a.name: vocab_dir if a.name == "bert-tokenizer" else folder for a in artifacts}

    def fake_ldm(sources, original, *, device, dtype, log, ema=False, controlnet=False):
        return random_ldm(original, device, dtype, controlnet)

    def fake_autoencoder(path, original, device, log):
        from diffusers import AutoencoderKL

        from xreal_bench.generators.diffusion import conversion

        with torch.device(device):
            return latent_models.Autoencoder(AutoencoderKL(**conversion.vae_config(original)).eval(), device)

    def fake_pipeline(*args, **kwargs):
        return random_sd_pipeline(sd_size, full, device, dtype, sd_dir)

    adapters = ("xreal", "controlnet", "cheff", "roentgen", "diffusers_pipeline")
    patches = [mock.patch(f"xreal_bench.generators.{m}.require_weights", fake_require) for m in adapters]
    patches += [
        mock.patch.object(latent_models, "load_latent_diffusion", fake_ldm),
        mock.patch.object(latent_models, "load_autoencoder", fake_autoencoder),
        mock.patch("diffusers.StableDiffusionPipeline.from_pretrained", fake_pipeline),
    ]
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


def conditions(n: int, size: int) -> list[Condition]:
    anatomy = np.zeros((size, size), np.uint8)
    s = size // 64
    (
        anatomy[10 * s : 52 * s, 36 * s : 56 * s],
        anatomy[10 * s : 52 * s, 8 * s : 28 * s],
        anatomy[30 * s : 46 * s, 24 * s : 40 * s],
    ) = 1, 2, 3
    return [
        Condition(
            case_id=f"c{i}",
            sample_index=0,
            seed=i,
            labels=(0,) * 14,
            prompt="Cardiomegaly",
            report="Large right pleural effusion.",
            image_path=Path("unused"),
            anatomy=anatomy,
            boxes=(Box("Cardiomegaly", 0.3, 0.45, 0.7, 0.75),),
        )
        for i in range(n)
    ]


def build_adapters(args, folder: Path) -> dict[str, Any]:
    from xreal_bench.generators.cheff import CheffGenerator, CheffOptions
    from xreal_bench.generators.controlnet import ControlNetGenerator, ControlNetOptions
    from xreal_bench.generators.diffusers_pipeline import DiffusersGenerator, DiffusersOptions
    from xreal_bench.generators.roentgen import RoentGenGenerator, RoentGenOptions
    from xreal_bench.generators.xreal import XRealGenerator, XRealOptions

    config = ""
    if not args.full_size:
        import yaml

        tiny = oc.scaled_down(oc.CONTROLNET, vocab_size=len(WORDS))
        config = str(folder / "tiny.yaml")
        Path(config).write_text(yaml.safe_dump(tiny))
    context = GeneratorContext(device=args.device, precision=args.precision, log=logging.getLogger("bench"))
    steps = args.steps
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')  # the family; weights are random
    side = 512 if args.full_size else 64
    return {
        "xreal": XRealGenerator(
            "xreal", XRealOptions(steps=steps, anatomy_blend_steps=steps // 2, original_config=config), context
        ),
        "controlnet": ControlNetGenerator(
            "controlnet", ControlNetOptions(steps=steps, original_config=config, backbone="file"), context
        ),
        "cheff": CheffGenerator("cheff", CheffOptions(steps=steps, original_config=config), context),
        "roentgen": RoentGenGenerator("roentgen", RoentGenOptions(steps=steps, resolution=side), context),
        "diffusers": DiffusersGenerator(
            "diffusers", DiffusersOptions(snapshot="sd", steps=steps, resolution=side, guidance=4.0), context
        ),
    }


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` runs after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def throughput(adapters: dict[str, Any], args) -> None:
    big = args.batch
    print(f"\nimages/s per adapter ({args.steps} steps; XReal = 2 passes):")
    print(f"  {'adapter':<11} {'batch 1':>9} {f'batch {big}':>9} {'speed-up':>9}")
    for name, adapter in adapters.items():
        size = adapter.model.image_size if hasattr(adapter, "model") else 64
        batch = conditions(big, size)
        t1 = timed(lambda: adapter.generate(batch[:1]), torch.device(args.device), args.repeats)
        tb = timed(lambda: adapter.generate(batch), torch.device(args.device), args.repeats)
        print(f"  {name:<11} {1 / t1:9.2f} {big / tb:9.2f} {t1 * big / tb:8.2f}x")


def sampler_overhead(adapter, args) -> None:
    """The adapters' DDIM loop vs bare UNet calls on the same inputs (XReal's UNet).

    ``direct`` compares the two wall times (noisy on a shared machine); ``isolated`` times the
    loop with a free denoiser (everything but the UNet: guidance arithmetic, blending, per-sample
    noise, scheduler steps) and divides by the bare UNet time."""
    from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
    from xreal_bench.generators.diffusion.noise import SampleNoise
    from xreal_bench.generators.diffusion.sampler import Blend, ddim_sample

    model, device = adapter.model, torch.device(args.device)
    print(f"\nsampler overhead per step vs bare UNet calls ({args.steps} steps; target <= 5 %):")
    print(f"  {'configuration':<42} {'batch':>5} {'UNet ms/step':>13} {'sampler ms/step':>16} {'direct':>8} {'isolated':>9}")
    scheduler = model.scheduler()
    for batch in (1, args.batch):
        context = adapter.prompts(["Cardiomegaly"] * batch)
        uncond = adapter.prompts([""])
        target = torch.randn(batch, *model.latent_shape, device=device)
        mask = torch.ones(batch, 1, *model.latent_shape[1:], device=device)
        mask[..., 4:10, 4:10] = 0
        for label, guidance, blend in (
            ("no guidance, no blend (Cheff, ControlNet)", 1.0, None),
            ("guidance 7 + blend (XReal pathology)", 7.0, Blend(target, mask)),
        ):
            denoise = LatentDenoiser(model.unet, context, uncond_context=uncond, guidance=guidance)
            rows = 2 * batch if guidance != 1.0 else batch
            z = torch.randn(rows, *model.latent_shape, device=device, dtype=model.dtype)
            ctx = denoise.context
            scheduler.set_timesteps(args.steps)
            timesteps = list(scheduler.timesteps)

            def bare():
                with torch.no_grad():
                    for t in timesteps:
                        model.unet(z, t, encoder_hidden_states=ctx, return_dict=False)

            def sampled(fn):
                def run():
                    with torch.no_grad():
                        noise = SampleNoise.from_seeds(range(batch), device)
                        ddim_sample(fn, scheduler, noise, model.latent_shape, steps=args.steps, eta=1.0, blend=blend)

                return run

            free = FreeDenoiser(denoise)
            tb, ts = timed(bare, device, args.repeats), timed(sampled(denoise), device, args.repeats)
            tf = timed(sampled(free), device, args.repeats)
            print(
                f"  {label:<42} {batch:>5} {1000 * tb / args.steps:13.2f} {1000 * ts / args.steps:16.2f} "
                f"{100 * (ts / tb - 1):7.1f}% {100 * tf / tb:8.2f}%"
            )


def pipeline_overhead(adapter, args) -> None:
    """The diffusers adapter's ``generate`` against the bare pipeline call it makes (same prompts, per-image
    CPU generators, no ``latents=``): the adapter's prompt building, truncation counting, per-image latents and
    grayscale output, per denoising step."""
    device = torch.device(args.device)
    print(f"\ndiffusers adapter vs bare pipeline call ({args.steps} steps; target <= 5 %):")
    print(f"  {'batch':>5} {'bare ms/step':>13} {'adapter ms/step':>16} {'overhead':>9}")
    for size in (1, args.batch):
        batch = conditions(size, 64)
        texts = [adapter.options.prompt(c).text for c in batch]

        def bare(batch=batch, texts=texts):
            with torch.no_grad():
                adapter.pipe(
                    prompt=texts,
                    negative_prompt=[""] * len(texts),
                    num_inference_steps=adapter.steps,
                    guidance_scale=adapter.guidance,
                    height=adapter.side,
                    width=adapter.side,
                    generator=[torch.Generator("cpu").manual_seed(int(c.seed)) for c in batch],
                    output_type="pt",
                )

        tb = timed(bare, device, args.repeats)
        ta = timed(lambda batch=batch: adapter.generate(batch), device, args.repeats)
        print(f"  {size:>5} {1000 * tb / args.steps:13.2f} {1000 * ta / args.steps:16.2f} {100 * (ta / tb - 1):8.1f}%")


class FreeDenoiser:
    """The LatentDenoiser's own work (batch doubling, dtype casts, guidance) with a UNet that costs nothing."""

    def __init__(self, denoise):
        self.denoise = denoise

    def __call__(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        guided = self.denoise.guidance != 1.0
        x = (torch.cat([z, z]) if guided else z).to(self.denoise.dtype)
        eps = x.float()
        if not guided:
            return eps
        from xreal_bench.generators.diffusion.sampler import classifier_free_guidance

        return classifier_free_guidance(*eps.chunk(2), self.denoise.guidance)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--full-size", action="store_true", help="released network sizes instead of tiny widths")
    parser.add_argument(
        "--precision", default=None, choices=list(DTYPES), help="default: fp16 on cuda with --full-size, else fp32"
    )
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps per pass, a divisor of 1000 (default: 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after a warm-up; the best is kept (default: 3)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: 1)")
    parser.add_argument("--batch", type=int, default=8, help="the batch size compared with batch 1 (default: 8)")
    parser.add_argument("--smoke", action="store_true", help="2 steps, 1 repeat, batch 2: checks that the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.repeats, args.batch = 2, 1, 2
    args.precision = args.precision or ("fp16" if args.device.startswith("cuda") and args.full_size else "fp32")
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    print("RANDOMLY INITIALISED networks (no weights loaded): a pure speed benchmark.")
    print(
        f"device {args.device}, {'released sizes' if args.full_size else 'tiny widths'}, {args.precision}, torch threads {args.threads}"
    )
    device, dtype = torch.device(args.device), DTYPES[args.precision]
    with (
        tempfile.TemporaryDirectory() as tmp,
        random_weights(args.full_size, device, dtype, Path(tmp), 512 if args.full_size else 64),
    ):
        adapters = build_adapters(args, Path(tmp))
        sampler_overhead(adapters["xreal"], args)
        pipeline_overhead(adapters["diffusers"], args)
        throughput(adapters, args)


if __name__ == "__main__":
    main()
