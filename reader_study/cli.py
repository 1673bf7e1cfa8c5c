"""``xreal-bench study``: create, serve and analyse blinded reader studies."""


def register(sub) -> None:
    """Placeholder until the reader-study commands land."""
