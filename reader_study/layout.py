"""Names inside a study folder, and how the app finds it."""

from pathlib import Path

STUDY_JSON = "study.json"  # non-secret settings
STUDY_DB = "study.sqlite"  # key, accounts, assignments, responses, audit
RUNS_META = "runs"  # meta key: the run directories the images came from (path, run id, config hash, dataset fingerprint)
IMAGES = "images"  # images/<opaque id>.png
STUDY_DIR_ENV = "XREAL_BENCH_STUDY_DIR"  # the served study folder, set by `study serve`
APP_SCRIPT = Path(__file__).with_name("app.py")
#: Extra ``streamlit run`` options the app needs; ``study serve`` passes them on. A dark page
#: (radiology reading-room convention): near-black background, grey panels, light text, blue accents.
APP_SERVER_OPTIONS: tuple[str, ...] = (
    "--theme.base", "dark",
    "--theme.backgroundColor", "#0a0a0a",
    "--theme.secondaryBackgroundColor", "#1a1a1a",
    "--theme.textColor", "#d8d8d8",
    "--theme.primaryColor", "#3d8bfd",
)  # fmt: skip
