"""Load test of the reader-study storage: N simulated readers submitting concurrently.

Each reader is its own process with its own connection (as each browser session has in the
app). It logs a view of every assigned item, submits it, and every ``--double-every``-th item it
submits a second time at once (a double click). At the end the database is checked:

- lost: items acknowledged as recorded whose scores are not all in the database;
- duplicated: (reader, item, criterion) with more than one row, or an item acknowledged as
  recorded twice.

Prints p50 / p95 / p99 / max submit latency. Target: 0 lost, 0 duplicated, p95 < 50 ms with
10 readers. Exit status 1 when a target is missed.

The app itself is not driven here: Streamlit speaks a protobuf-over-websocket protocol that
needs a browser per reader; tests/test_study_browser.py covers that path end to end.

    python benchmarks/study_load.py --readers 10 --cases 20
    python benchmarks/study_load.py --smoke    # 2 readers, 3 cases: checks that it runs
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def reader_process(db: str, name: str, seed: int, double_every: int, start: float, queue) -> None:
    from xreal_bench.reader_study.storage import Storage

    rng = np.random.default_rng(seed)
    latencies, acked, statuses = [], [], []
    with Storage(db) as storage:
        reader_id = storage.conn.execute("SELECT reader_id FROM readers WHERE name = ?", (name,)).fetchone()[0]
        while time.time() < start:
            time.sleep(0.001)
        n = 0
        while (position := storage.next_position(reader_id)) is not None:
            view = storage.item_view(reader_id, position)
            storage.record_view(reader_id, view.item_id, name)
            scores = {c.name: int(rng.choice(c.values)) for c in view.criteria}
            repeats = 2 if double_every and n % double_every == 0 else 1
            for _ in range(repeats):
                t0 = time.perf_counter()
                result = storage.submit(reader_id, view.item_id, scores, session=name)
                latencies.append(time.perf_counter() - t0)
                statuses.append(result.status)
                if result.status == "recorded":
                    acked.append((reader_id, view.item_id, len(scores)))
            n += 1
    queue.put((latencies, acked, statuses))


def check(db: Path, acked: list[tuple[int, str, int]]) -> tuple[int, int]:
    con = sqlite3.connect(db)
    counts = {
        (r, i): n for r, i, n in con.execute("SELECT reader_id, item_id, COUNT(*) FROM responses GROUP BY reader_id, item_id")
    }
    multi = con.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM responses GROUP BY reader_id, item_id, criterion HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    con.close()
    lost = sum(counts.get((r, i), 0) != n for r, i, n in acked)
    twice = len(acked) - len({(r, i) for r, i, _ in acked})
    return lost, multi + twice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--readers", type=int, default=10, help="concurrent simulated readers (processes)")
    parser.add_argument("--cases", type=int, default=20, help="cases in the study (items per reader ~ 5 x cases)")
    parser.add_argument("--double-every", type=int, default=10, help="submit every k-th item twice (0 = never)")
    parser.add_argument("--target-p95-ms", type=float, default=50.0, help="p95 submit latency target")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (2 readers, 3 cases) to check that the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.readers, args.cases = 2, 3

    from xreal_bench.demo.study import sample_study

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        readers = [f"reader{k + 1:02d}" for k in range(args.readers)]
        created = sample_study(tmp, n_run_cases=args.cases, n_cases=args.cases, readers=readers, image_size=64)
        db = created.study_dir / "study.sqlite"
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        start = time.time() + 1.0
        procs = [
            ctx.Process(target=reader_process, args=(str(db), name, k, args.double_every, start, queue))
            for k, name in enumerate(readers)
        ]
        for p in procs:
            p.start()
        results = [queue.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        wall = time.time() - start
        latencies = np.array([x for r in results for x in r[0]]) * 1000
        acked = [a for r in results for a in r[1]]
        statuses = [s for r in results for s in r[2]]
        lost, duplicated = check(db, acked)
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        print(f"readers: {args.readers}  items per reader: {created.items_per_reader}  wall: {wall:.1f} s")
        print(
            f"submits: {len(latencies)} ({statuses.count('recorded')} recorded, {statuses.count('duplicate')} double clicks answered 'duplicate')"
        )
        print(f"submit latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {latencies.max():.1f}")
        print(f"throughput: {len(latencies) / wall:.0f} submits/s")
        print(f"lost rows: {lost}  duplicated rows: {duplicated}")
        ok = lost == 0 and duplicated == 0 and p95 < args.target_p95_ms
        print("PASS" if ok else f"FAIL (targets: 0 lost, 0 duplicated, p95 < {args.target_p95_ms:.0f} ms)")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
