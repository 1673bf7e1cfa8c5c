"""Shared machinery of the diffusion adapters (XReal, ControlNet, Cheff, RoentGen).

- :mod:`~xreal_bench.generators.diffusion.options` — option checks shared by the adapters (step counts, ...).
- :mod:`~xreal_bench.generators.diffusion.runtime` — logger, weights lookup, device/precision, output format.
- :mod:`~xreal_bench.generators.diffusion.precision` — run precision (fp32 / fp16 / bf16) per device.
- :mod:`~xreal_bench.generators.diffusion.conditions` — Conditions -> model inputs (anatomy, regions, prompts), with notes.
- :mod:`~xreal_bench.generators.diffusion.noise` — per-sample random streams (results independent of batching).
- :mod:`~xreal_bench.generators.diffusion.schedules` — the released noise schedules as diffusers schedulers.
- :mod:`~xreal_bench.generators.diffusion.sampler` — the DDIM loop with masked blending (XReal's control).
- :mod:`~xreal_bench.generators.diffusion.denoisers` — UNet (+ ControlNet) calls with classifier-free guidance.
- :mod:`~xreal_bench.generators.diffusion.images` — value ranges, grayscale, the original's bicubic resize.
- :mod:`~xreal_bench.generators.diffusion.original_config` — the released architectures as ``original_config``.
- :mod:`~xreal_bench.generators.diffusion.conversion` — CompVis/lllyasviel keys -> diffusers, with key accounting.
- :mod:`~xreal_bench.generators.diffusion.converted_cache` — converted weights cached as safetensors.
- :mod:`~xreal_bench.generators.diffusion.latent_models` — loading the parts of a latent diffusion model.
- :mod:`~xreal_bench.generators.diffusion.text` — offline BERT tokenisation, truncation counting, text encoder.
- :mod:`~xreal_bench.generators.diffusion.sr3` — Cheff's SR3-style super-resolution UNet and sampler.
"""
