"""Regenerate the README's reader-study analysis figures from a simulated study.

A synthetic study (the demo's sample run: real + two generators) is built, four simulated readers
answer every item in order through :class:`~xreal_bench.reader_study.storage.Storage` (Likert
scores = source effect + case effect + reader bias + noise; real-or-generated calls that see
through one generator more often than the other), ``study analyze`` runs, and its figures are
copied to ``docs/images/``. The reading-room screenshots come from the browser test::

    python docs/readme_figures.py                          # docs/images/study-*.png (the two figures in the README)
    XREAL_BENCH_SCREENSHOTS=docs/images pytest -q tests/test_study_browser.py -k viewport   # reading-room-*.png
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

QUALITY = {"real": 4.2, "xreal": 3.6, "cheff": 2.8}  # mean Likert score per source
SEEN_THROUGH = {"real": 0.0, "xreal": 0.55, "cheff": 1.1}  # how far a reader's "generated" belief shifts
FIGURES = {"likert.png": "study-likert.png", "turing_auc.png": "study-turing-auc.png"}


def simulate(study_dir: Path, readers: list, seed: int) -> None:
    """Answer every assigned item of every reader, in each reader's order."""
    from xreal_bench.reader_study.storage import Storage

    rng = np.random.default_rng(seed)
    con = sqlite3.connect(study_dir / "study.sqlite")
    key = dict(con.execute("SELECT i.item_id, m.source || '/' || m.case_id FROM items i JOIN images m USING (image_id)"))
    con.close()
    case_effect: dict[str, float] = {}
    with Storage(study_dir / "study.sqlite") as storage:
        criteria = [c.name for c in storage.criteria("rating")]
        for k, reader in enumerate(readers):
            account = storage.authenticate(reader.token)
            bias = (k - 1.5) * 0.25
            items = storage.conn.execute(
                "SELECT a.item_id, i.block FROM assignments a JOIN items i USING (item_id) WHERE a.reader_id = ? ORDER BY position",
                (account.reader_id,),
            ).fetchall()
            for item, block in items:
                source, case = key[item].split("/", 1)
                if block == "turing":
                    belief = SEEN_THROUGH[source] + rng.normal(0, 0.8)
                    call = int(belief > 0.5)
                    confidence = int(np.clip(1 + abs(belief - 0.5) * 3, 1, 5))
                    answer = {"turing_call": call, "turing_confidence": confidence}
                else:
                    effect = case_effect.setdefault(case, rng.normal(0, 0.5))
                    answer = {
                        c: int(np.clip(np.rint(QUALITY[source] + effect + bias + rng.normal(0, 0.6)), 1, 5)) for c in criteria
                    }
                storage.record_view(account.reader_id, item, "simulated")
                result = storage.submit(account.reader_id, item, answer, session="simulated")
                if not result.stored:
                    raise RuntimeError(f"simulated answer for {item} not stored: {result.status}")


def main(argv: list[str] | None = None) -> int:
    from xreal_bench.demo.study import sample_study
    from xreal_bench.reader_study.analysis import analyze_study

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("images"), help="where the PNGs go")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        created = sample_study(
            Path(tmp), n_cases=12, turing_cases=24, readers=["r1", "r2", "r3", "r4"], duplicate_fraction=0.0, image_size=64
        )
        simulate(created.study_dir, created.readers, args.seed)
        result = analyze_study(created.study_dir, bootstrap=200, seed=args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        for name, target in FIGURES.items():
            shutil.copyfile(result.out / name, args.out / target)
            print(args.out / target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
