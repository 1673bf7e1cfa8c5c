"""xreal-bench: a benchmark suite for chest X-ray generative models."""

__version__ = "0.1.0"
