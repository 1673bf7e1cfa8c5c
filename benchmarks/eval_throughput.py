"""Evaluation throughput on the synthetic demo data.

Prints, for N generated images:
  (a) the raw evaluator forward passes alone (images already decoded in memory),
  (b) the full evaluation pass over the same images (decode, DataLoader, cached real pixels/masks,
      MS-SSIM, Dice, statistics) and the ratio (b)/(a) — target <= 1.15;
  (b') ``evaluate`` of the same generator with every metric of the metric table on (the pass, the
      memorization search and pixel re-check, Grad-CAM on boxed images, scoring with every CI and
      subgroup; caches warm) and the ratio (b')/(a) — target <= 1.15 with the standard suite, whose
      encoders' forward passes dominate (the demo's tiny networks make bootstraps dominate instead);
  (c) evaluating 4 generators with the cached real side vs recomputing the real side for each
      generator — target >= 1.6x;
and the peak memory (RSS) of the full evaluation for two N (it must not grow with N beyond the
per-image outputs); and (d) the memorization audit's nearest-neighbour search
(:func:`xreal_bench.metrics.neighbours.nearest`) vs training-set size N = 10^3, 10^4, 10^5 (random unit
vectors, d = 1024, 1000 queries, k = 5, read memory-mapped from a .npy as the audit does): seconds, peak
working memory (CUDA: allocated; CPU: anonymous RSS above the start, sampled every 5 ms) beside the
N-independent bound, and a linear extrapolation (least squares through 0) to MIMIC-CXR's ~370k training images.
``--neighbours`` runs (d) alone.

``--suite demo`` (default) uses the demo's small networks; ``--suite standard`` uses the real
evaluators (Inception, torchxrayvision DenseNet and PSPNet) with RANDOM weights written to a
temporary weights folder — valid for timing only, never for numbers.

    python benchmarks/eval_throughput.py [--suite demo|standard] [--samples 2 4] [--device cpu] [--cases N] [--eval-batch B]
                                         [--subjects 120]
    python benchmarks/eval_throughput.py --neighbours [--device cuda]   # (d) only
    python benchmarks/eval_throughput.py --smoke     # tiny sizes: checks that it runs, the numbers mean nothing

The real side of (c) costs as much per image as the generated side, so with S samples per case
and G generators the best possible speed-up is G(1+S)/(1+GS): 1.6x for S=1, G=4 (1.33x for S=2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from xreal_bench.config import config_from_dict
from xreal_bench.demo.command import demo_tables
from xreal_bench.evaluation import evaluate, real_items
from xreal_bench.imaging import load_standard
from xreal_bench.metrics.engine import (
    ImageItem,
    Preprocessing,
    evaluate_generated,
    evaluate_real,
    real_fingerprint,
    run_evaluators,
    to_float,
)
from xreal_bench.metrics.evaluators.testing import unpublished_release_artifacts, write_random_release_files
from xreal_bench.metrics.neighbours import Backend, nearest, search_memory_bytes
from xreal_bench.metrics.suite import build_suite
from xreal_bench.pipeline import generate, open_session
from xreal_bench.rundir import GeneratorDir
from xreal_bench.weights import WeightsManager


def prepare(tmp: Path, suite: str, samples: int, device: str, cases: int = 0, eval_batch: int = 32, subjects: int = 120):
    tables = demo_tables(str(tmp / "run"))
    tables["dataset"]["synthetic"] = {"n_subjects": subjects}
    tables["generators"] = {
        "g1": {"type": "noise"},
        "g2": {"type": "shuffled"},
        "g3": {"type": "phantom"},
        "g4": {"type": "real"},
    }
    tables["run"]["samples_per_condition"] = samples
    tables["run"]["num_cases"] = cases
    tables["run"]["device"] = device
    tables["metrics"]["evaluators"] = suite
    tables["metrics"]["num_workers"] = 2
    tables["metrics"]["batch_size"] = eval_batch
    if suite == "standard":
        tables["weights"] = {"dir": str(tmp / "weights")}
        if not (tmp / "weights").exists():
            write_random_release_files(WeightsManager(tmp / "weights"))
    cfg = config_from_dict(tables)
    session = open_session(cfg, progress=False)
    session.weights.overrides.update(unpublished_release_artifacts())  # random files cannot match published hashes
    generate(session, progress=False)
    return cfg, session


def items_of(cfg, name: str) -> list[ImageItem]:
    gdir = GeneratorDir(cfg.run.out, name)
    return [ImageItem(e.case_id, e.sample_index, gdir.root / e.file) for e in gdir.ok_entries()]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(tmp: Path, suite_name: str, samples: int, device: str, cases: int, eval_batch: int, subjects: int) -> dict:
    cfg, session = prepare(tmp, suite_name, samples, device, cases, eval_batch, subjects)
    suite = build_suite(cfg.metrics, session.weights, session.device)
    prep = Preprocessing(cfg.run.resolution, cfg.run.bit_depth, cfg.dataset.geometry)
    m = cfg.metrics
    real_dir = tmp / "cache" / real_fingerprint(session.scan.fingerprint, prep, suite)[:16]
    options = {
        "suite": suite,
        "prep": prep,
        "info": session.info,
        "batch_size": m.batch_size,
        "workers": m.num_workers,
        "progress": False,
    }
    evaluate_real(real_items(session.scan.cases), cache_dir=real_dir, **options)
    items = items_of(cfg, "g1")
    decoded = torch.stack([to_float(torch.from_numpy(load_standard(i.path, 256).astype("int32"))[None], 8)[0] for i in items])

    def forward_only():
        for start in range(0, len(decoded), m.batch_size):
            run_evaluators(suite, decoded[start : start + m.batch_size])

    def full():
        evaluate_generated(items, real_dir=real_dir, name="g1", **options)

    def every_metric():
        evaluate(session, ["g1"], progress=False)

    forward_only()  # warm-up (allocators, lazy init)
    every_metric()  # fills the real-side, threshold-split and training-split caches
    t_forward, t_full = min(timed(forward_only) for _ in range(2)), min(timed(full) for _ in range(2))
    t_every = timed(every_metric)

    def all_generators(cached: bool):
        for k, name in enumerate(("g1", "g2", "g3", "g4")):
            folder = real_dir if cached else tmp / f"nocache-{samples}-{k}"
            if not cached or not folder.exists():
                evaluate_real(real_items(session.scan.cases), cache_dir=folder, **options)
            evaluate_generated(items_of(cfg, name), real_dir=folder, name=name, **options)

    t_cached, t_uncached = timed(lambda: all_generators(True)), timed(lambda: all_generators(False))
    return {"n": len(items), "forward": t_forward, "full": t_full, "every": t_every, "cached": t_cached, "uncached": t_uncached}


def peak_rss(tmp: Path, suite: str, samples: int, device: str, cases: int, eval_batch: int, subjects: int) -> tuple[int, float]:
    """Run one full evaluation in a fresh process working in ``tmp``; returns (N, peak RSS in MB)."""
    code = (
        f"import json, resource, sys; from pathlib import Path; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r});"
        f"import eval_throughput as e; tmp = Path({str(tmp)!r});"
        f"cfg, s = e.prepare(tmp, {suite!r}, {samples}, {device!r}, {cases}, {eval_batch}, {subjects});"
        "from xreal_bench.evaluation import evaluate; evaluate(s, ['g1'], progress=False);"
        "print(json.dumps([len(e.items_of(cfg, 'g1')), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    n, mb = json.loads(out.strip().splitlines()[-1])
    return n, mb


#: MIMIC-CXR-JPG's training split, about (images).
MIMIC_TRAIN = 370_000


def anonymous_rss() -> int:
    """This process's anonymous resident memory in bytes (Linux; 0 elsewhere): file-backed pages of the
    memory-mapped training matrix are not counted."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def random_unit_matrix(path: Path, n: int, dim: int, seed: int, chunk: int = 8192) -> np.ndarray:
    """``n`` random unit vectors written chunk by chunk to a .npy, returned memory-mapped."""
    rng = np.random.default_rng(seed)
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        rows = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        matrix[start : start + len(rows)] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    matrix.flush()
    del matrix
    return np.load(path, mmap_mode="r")


def search_peak(queries: np.ndarray, train: np.ndarray, device: str, k: int, backend: Backend) -> tuple[float, int, str]:
    """Seconds and peak working memory (bytes) of one search."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    peak, stop, start_rss = [0], threading.Event(), anonymous_rss()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], anonymous_rss() - start_rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    found = nearest(queries, train, k=k, device=device, backend=backend)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    stop.set()
    watcher.join()
    if device.startswith("cuda"):
        peak[0] = torch.cuda.max_memory_allocated() - base
    return seconds, peak[0], found.backend


def neighbour_search(sizes: list[int], *, dim: int, queries: int, k: int, device: str, backend: Backend = "auto") -> None:
    """(d): search time and peak memory vs training-set size, extrapolated linearly to :data:`MIMIC_TRAIN`."""
    q = np.random.default_rng(0).standard_normal((queries, dim), dtype=np.float32)
    times = []
    bound = search_memory_bytes(dim=dim, k=k)
    print(f"(d) nearest-neighbour search, d = {dim}, {queries} queries, k = {k}, on {device}:")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            train = random_unit_matrix(Path(tmp) / f"train_{n}.npy", n, dim, seed=n)
            nearest(q[:2], train[:2], k=1, device=device, backend=backend)  # warm-up (kernels, threads)
            seconds, peak, used = search_peak(q, train, device, k, backend)
            times.append(seconds)
            print(f"  N = {n:7d}: {seconds:9.4f}s   peak working memory {peak / 2**20:8.1f} MB "
                  f"(bound {bound / 2**20:.0f} MB, backend {used})")  # fmt: skip
            del train
    n, t = np.asarray(sizes, dtype=np.float64), np.asarray(times)
    slope = float((n * t).sum() / (n * n).sum())  # least squares through the origin: the search is linear in N
    print(f"  extrapolated to N = {MIMIC_TRAIN}: {slope * MIMIC_TRAIN:.2f}s "
          f"({slope * 1e6:.4f} us per training image, linear least squares through 0); memory stays at the bound")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["demo", "standard"], default="demo")
    parser.add_argument("--samples", type=int, nargs=2, default=[2, 4], help="samples per case for the two N")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", type=int, default=0, help="test cases to use (0 = all 64; the standard suite on CPU wants ~8)")
    parser.add_argument(
        "--eval-batch",
        type=int,
        default=32,
        help="evaluation batch size; keep N >= 2x this so peak memory compares N, not the batch",
    )
    parser.add_argument("--subjects", type=int, default=120, help="synthetic subjects (120 give 64 test images)")
    parser.add_argument("--neighbours", action="store_true", help="only (d): nearest-neighbour search vs training-set size")
    parser.add_argument("--search-backend", choices=["auto", "torch", "faiss"], default="auto", help="backend of (d)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (10 subjects, samples 1 2, batch 4): does it run?")
    args = parser.parse_args()
    sizes, dim, queries = [1_000, 10_000, 100_000], 1024, 1000
    if args.smoke:
        args.subjects, args.samples, args.eval_batch = 10, [1, 2], 4
        sizes, dim, queries = [2_000, 6_000], 64, 200
    if args.neighbours:
        neighbour_search(sizes, dim=dim, queries=queries, k=5, device=args.device, backend=args.search_backend)
        return
    with tempfile.TemporaryDirectory() as tmp:
        r = measure(Path(tmp), args.suite, args.samples[0], args.device, args.cases, args.eval_batch, args.subjects)
    print(f"suite {args.suite!r} on {args.device}, N = {r['n']} generated images")
    print(f"(a) evaluator forward passes alone: {r['forward']:.2f}s")
    print(
        f"(b) full evaluation pass:           {r['full']:.2f}s   ratio (b)/(a) = {r['full'] / r['forward']:.3f} (target <= 1.15)"
    )
    print(
        f"(b') evaluate with every metric:     {r['every']:.2f}s   ratio (b')/(a) = {r['every'] / r['forward']:.3f}"
        " (target <= 1.15 with the standard suite; scoring, searches and bootstraps included, caches warm)"
    )
    print(f"(c) 4 generators, cached real side: {r['cached']:.2f}s vs recomputed per generator {r['uncached']:.2f}s"
          f"   speed-up {r['uncached'] / r['cached']:.2f}x (target >= 1.6)")  # fmt: skip
    for samples in args.samples:
        with tempfile.TemporaryDirectory() as tmp:
            n, mb = peak_rss(Path(tmp), args.suite, samples, args.device, args.cases, args.eval_batch, args.subjects)
        print(f"peak RSS of a full evaluation with N = {n:5d} (batch {args.eval_batch}): {mb:8.0f} MB")
    neighbour_search(sizes, dim=dim, queries=queries, k=5, device=args.device, backend=args.search_backend)


if __name__ == "__main__":
    main()
