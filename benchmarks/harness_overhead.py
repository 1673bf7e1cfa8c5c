"""Harness overhead: wall time of `generate` / pure generation time, for batch sizes 1, 4, 16.

The generator's cost is known exactly (it sleeps ``--cost`` seconds per image, as a model would
compute), so everything above ``N x cost`` is the harness: case preparation (anatomy maps,
boxes, cases.jsonl), condition building, output normalisation, PNG encoding, atomic writes,
manifest lines with fsync, progress. Runs on the synthetic demo data through the real data
loader and conditioning.
Target: overhead <= 5 % at batch >= 4.

    python benchmarks/harness_overhead.py [--cost 0.05] [--subjects 120]
    python benchmarks/harness_overhead.py --smoke    # tiny sizes: checks that it runs, the numbers mean nothing
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from xreal_bench.config import config_from_dict
from xreal_bench.demo.command import demo_tables
from xreal_bench.generators import Generator, GeneratorOutput, register_generator
from xreal_bench.harness import run_generator
from xreal_bench.pipeline import open_session, prepare_generation


@register_generator
class FixedCost(Generator):
    """Sleeps a fixed time per image, then returns seeded noise at 256 px."""

    type_name = "benchmark-fixed-cost"
    inputs = frozenset({"anatomy", "pathology", "labels"})
    cost = 0.05

    def generate(self, conditions):
        time.sleep(self.cost * len(conditions))
        return GeneratorOutput([torch.rand(1, 256, 256, generator=torch.Generator().manual_seed(c.seed)) for c in conditions])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost", type=float, default=0.05, help="seconds of generation per image")
    parser.add_argument("--subjects", type=int, default=120, help="synthetic subjects (120 give 64 test images)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (10 subjects, 2 ms per image): does it run?")
    args = parser.parse_args()
    if args.smoke:
        args.cost, args.subjects = 0.002, 10
    FixedCost.cost = args.cost
    with tempfile.TemporaryDirectory() as tmp:
        tables = demo_tables(str(Path(tmp) / "run"))
        tables["dataset"]["synthetic"] = {"n_subjects": args.subjects}
        tables["generators"] = {"bench": {"type": "benchmark-fixed-cost"}}
        tables["run"]["samples_per_condition"] = 4
        print(f"{'batch':>5} {'images':>6} {'wall s':>8} {'pure s':>8} {'ratio':>7} {'overhead':>9}")
        for batch in (1, 4, 16):
            tables["run"]["batch_size"] = batch
            cfg = config_from_dict(tables)
            session = open_session(cfg, progress=False)
            started = time.perf_counter()
            prepared = prepare_generation(session, cfg.generators, progress=False)  # anatomy maps, boxes, cases.jsonl
            summary = run_generator(
                cfg, "bench", cfg.generators["bench"], cases=session.scan.cases, prepared=prepared,
                weights=session.weights, overwrite=True, progress=False,
            )  # fmt: skip
            wall = time.perf_counter() - started
            pure = summary.generated * args.cost
            print(
                f"{batch:>5} {summary.generated:>6} {wall:>8.2f} {pure:>8.2f} {wall / pure:>7.3f} {100 * (wall / pure - 1):>8.1f}%"
            )


if __name__ == "__main__":
    main()
