"""Option checks shared by the LDM adapters (raised as config errors naming the key)."""

from __future__ import annotations

from xreal_bench.validation import require


def check_step_count(steps: int, timesteps: int, what: str = "steps") -> None:
    """The LDM/Cheff DDIM samplers take every ``timesteps // steps``-th step; other counts change the step count."""
    if steps < 1 or timesteps % steps:
        divisors = [d for d in range(1, timesteps + 1) if timesteps % d == 0]
        near = sorted(divisors, key=lambda d: abs(d - steps))[:4]
        raise ValueError(
            f"{what}={steps}: the original DDIM sampler needs a divisor of the {timesteps} training steps "
            f"(e.g. {', '.join(map(str, sorted(near)))})"
        )


def validate_sampling(steps: int, eta: float, guidance: float, max_tokens: int, timesteps: int = 1000) -> None:
    """DDIM steps dividing the training steps, eta >= 0, guidance >= 0, a sane token limit."""
    try:
        check_step_count(steps, timesteps)
    except ValueError as exc:
        require(False, "steps", str(exc))
    require(eta >= 0.0, "eta", f"expected >= 0 (0 deterministic DDIM, 1 the released setting), got {eta}")
    require(guidance >= 0.0, "guidance", f"expected >= 0 (1 = no guidance), got {guidance}")
    require(1 <= max_tokens <= 512, "max_tokens", f"expected 1..512, got {max_tokens}")


def check_prompt_rule(name: str) -> None:
    """``prompt_rule`` must name a rule of :data:`~xreal_bench.generators.prompts.PROMPT_RULES`."""
    from xreal_bench.generators.prompts import PROMPT_RULES

    require(name in PROMPT_RULES, "prompt_rule", f"unknown prompt rule {name!r} (known: {', '.join(PROMPT_RULES)})")
