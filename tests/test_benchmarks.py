"""Every script in benchmarks/ runs: each is started with ``--smoke`` (tiny sizes) from a folder outside the
checkout, must exit 0 and print the numbers it exists for. A new script fails here until it has a ``--smoke``
flag and an entry in SMOKES saying what it prints."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: A printed number that must be finite and positive (captured); the numbers of one line are captured together.
NUM = r"(\d+(?:\.\d+)?)"
SIGNED = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Smoke:
    """What a smoke run of one script must print: regex (multi-line mode) -> number of matching lines."""

    prints: dict[str, int]
    args: tuple[str, ...] = ()
    slow: bool = True


SMOKES = {
    "eval_throughput.py": Smoke({
        rf"^\(b\) full evaluation pass: .* ratio \(b\)/\(a\) = {NUM} ": 1,
        rf"^\(b'\) evaluate with every metric: +{NUM}s +ratio \(b'\)/\(a\) = {NUM} ": 1,
        rf"^\(c\) 4 generators, cached real side: {NUM}s vs recomputed per generator {NUM}s +speed-up {NUM}x ": 1,
        rf"^peak RSS of a full evaluation with N = +{NUM} \(batch \d+\): +{NUM} MB$": 2,
        rf"^  N = +{NUM}: +{NUM}s +peak working memory +{SIGNED} MB \(bound {NUM} MB, backend (?:torch|faiss)\)$": 2,
        rf"^  extrapolated to N = 370000: {NUM}s \({NUM} us per training image": 1,
    }),
    "harness_overhead.py": Smoke({
        rf"^ +(?:1|4|16) +{NUM} +{NUM} +{NUM} +{NUM} +{SIGNED}%$": 3,  # images, wall s, pure s, ratio, overhead
    }),
    "sampler_throughput.py": Smoke({
        rf"^  \S.*? +\d+ +{NUM} +{NUM} +{SIGNED}% +{NUM}%$": 4,  # UNet and sampler ms/step, direct and isolated overhead
        rf"^  (?:xreal|controlnet|cheff|roentgen|diffusers) +{NUM} +{NUM} +{NUM}x$": 5,  # images/s at both batches, speed-up
        rf"^ +(?:1|2) +{NUM} +{NUM} +{SIGNED}%$": 2,  # diffusers adapter vs bare pipeline: ms/step, overhead
    }),
    # A latency target would make the smoke run flaky on a loaded machine; lost or duplicated rows still fail it.
    "study_load.py": Smoke({
        rf"^submit latency ms: p50 {NUM}  p95 {NUM}  p99 {NUM}  max {NUM}$": 1,
        rf"^throughput: {NUM} submits/s$": 1,
        r"^lost rows: 0  duplicated rows: 0$": 1,
        r"^PASS$": 1,
    }, args=("--target-p95-ms", "1e6"), slow=False),
}  # fmt: skip

SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))


def test_every_smoke_entry_names_a_script():
    assert sorted(set(SMOKES) - set(SCRIPTS)) == []


@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=[pytest.mark.slow] if s in SMOKES and SMOKES[s].slow else []) for s in SCRIPTS]
)
def test_benchmark_smoke_run(script, tmp_path):
    if script not in SMOKES:
        pytest.fail(f"benchmarks/{script} has no smoke run: give it a --smoke flag and an entry in SMOKES ({__file__})")
    smoke = SMOKES[script]
    cmd = [sys.executable, str(BENCHMARKS / script), "--smoke", *smoke.args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for pattern, count in smoke.prints.items():
        lines = list(re.finditer(pattern, result.stdout, re.MULTILINE))
        assert len(lines) == count, f"{pattern!r}: {len(lines)} lines, expected {count}\n{result.stdout}"
        numbers = [float(x) for line in lines for x in line.groups()]
        assert all(math.isfinite(x) and x > 0 for x in numbers), f"{pattern!r}: {numbers}\n{result.stdout}"
