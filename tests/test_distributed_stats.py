"""FeatureStats.all_reduce across two real processes (gloo backend, file store)."""

import os

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp

from xreal_bench.metrics.stats import FeatureStats, all_reduce

WORLD = 2


def features() -> np.ndarray:
    return np.random.default_rng(0).normal(loc=3.0, size=(301, 24))


def worker(rank: int, store: str, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        shard = np.array_split(features(), WORLD)[rank]  # uneven shards: 151 and 150 rows
        local = FeatureStats.empty(24)
        for start in range(0, len(shard), 16):
            local.update(shard[start : start + 16])
        before = local.outer.copy()
        reduced = all_reduce(local)
        assert np.array_equal(local.outer, before), "all_reduce must not modify its input"
        reduced.save(os.path.join(out_dir, f"rank{rank}.npz"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_across_two_processes_equals_single_process(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    single = FeatureStats.from_features(features())
    for rank in range(WORLD):
        reduced = FeatureStats.load(tmp_path / f"rank{rank}.npz")
        assert reduced.n == single.n == 301
        np.testing.assert_allclose(reduced.sum, single.sum, rtol=1e-12)
        np.testing.assert_allclose(reduced.outer, single.outer, rtol=1e-12, atol=1e-12 * np.abs(single.outer).max())
        np.testing.assert_allclose(reduced.cov(), np.cov(features(), rowvar=False), rtol=1e-9, atol=1e-12)


def test_all_reduce_without_process_group_is_a_no_op():
    stats = FeatureStats.from_features(features()[:5])
    assert not dist.is_initialized()
    assert all_reduce(stats) is stats
