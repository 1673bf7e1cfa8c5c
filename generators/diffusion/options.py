"""Option checks shared by the LDM adapters (raised as config errors naming the key)."""

from __future__ import annotations

from generators.diffusion.schedules import check_step_count
from xreal_bench.validation import require


def validate_sampling(steps: int, eta: float, guidance: float, max_tokens: int, timesteps: int = 1000) -> None:
    """DDIM steps dividing the training steps, eta >= 0, guidance >= 0, a sane token limit."""
    try:
        check_step_count(steps, timesteps)
    except ValueError as exc:
        require(False, "steps", str(exc))
    require(eta >= 0.0, "eta", f"expected >= 0 (0 deterministic DDIM, 1 the released setting), got {eta}")
    require(guidance >= 0.0, "guidance", f"expected >= 0 (1 = no guidance), got {guidance}")
    require(1 <= max_tokens <= 512, "max_tokens", f"expected 1..512, got {max_tokens}")
