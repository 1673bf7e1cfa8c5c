"""Shared machinery of the diffusion adapters (XReal, ControlNet, Cheff, RoentGen).

- :mod:`~generators.diffusion.options` — option checks shared by the adapters (step counts, ...).
- :mod:`~generators.diffusion.runtime` — logger, weights lookup, device/precision, output format.
- :mod:`~generators.diffusion.precision` — run precision (fp32 / fp16 / bf16) per device.
- :mod:`~generators.diffusion.conditions` — Conditions -> model inputs (anatomy, regions, prompts), with notes.
- :mod:`~generators.diffusion.noise` — per-sample random streams (results independent of batching).
- :mod:`~generators.diffusion.schedules` — the released noise schedules as diffusers schedulers.
- :mod:`~generators.diffusion.sampler` — the DDIM loop with masked blending (XReal's control).
- :mod:`~generators.diffusion.denoisers` — UNet (+ ControlNet) calls with classifier-free guidance.
- :mod:`~generators.diffusion.images` — value ranges, grayscale, the original's bicubic resize.
- :mod:`~generators.diffusion.checkpoint_io` — reading CompVis pickles without running foreign code.
- :mod:`~generators.diffusion.original_config` — the released architectures as ``original_config``.
- :mod:`~generators.diffusion.conversion` — CompVis/lllyasviel keys -> diffusers, with key accounting.
- :mod:`~generators.diffusion.converted_cache` — converted weights cached as safetensors.
- :mod:`~generators.diffusion.latent_models` — loading the parts of a latent diffusion model.
- :mod:`~generators.diffusion.text` — offline BERT tokenisation, truncation counting, text encoder.
- :mod:`~generators.diffusion.sr3` — Cheff's SR3-style super-resolution UNet and sampler.
"""
