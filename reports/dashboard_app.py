"""The results dashboard (Streamlit). Start it with ``xreal-bench dashboard RUN_DIR...``.

The run directories come from the script's arguments (``streamlit run dashboard_app.py -- RUN_DIR...``) or,
without arguments, from :data:`~xreal_bench.reports.dashboard.RUNS_ENV`; the browser chooses only among them.
Sidebar filters (runs, generators, metrics, subset) drive three tabs: the leaderboard with CIs, the sample
grid with a case picker, per-pathology views; a fourth tab shows each run's provenance. Text from files is
shown as plain text (tables, ``st.text``) or escaped Markdown, never as HTML.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from xreal_bench.errors import UserFacingError
from xreal_bench.reports import dashboard as dash
from xreal_bench.reports.runs import Run, load_runs
from xreal_bench.tables import markdown_cell

DEMO_WARNING = (
    "Demo run: scored with the demo's own evaluators (small networks trained on synthetic phantoms). These numbers "
    "are NOT Inception-FID or torchxrayvision scores and are not comparable with published results."
)
DECIMALS = 3


@dataclass(frozen=True)
class Filters:
    """What the sidebar chose: runs (positions), generators, metrics (result-row names), subset."""

    runs: list[int]
    generators: list[str]
    metrics: list[str]
    subset: str


def results_stamp(path: Path) -> int:
    """``results.csv``'s modification time, so an evaluated-again run is read again."""
    try:
        return (path / "results.csv").stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_runs(paths: tuple[str, ...], stamps: tuple[int, ...]) -> list[Run]:
    del stamps  # part of the cache key only
    return load_runs(paths)


def sidebar(runs: list[Run], names: list[str]) -> Filters:
    bar = st.sidebar
    bar.header("Filters")
    chosen_runs = bar.multiselect("Runs", list(range(len(runs))), default=list(range(len(runs))), format_func=names.__getitem__)
    generators = dash.generator_choices(runs)
    chosen_generators = bar.multiselect("Generators", generators, default=generators, key="generators")
    metrics = dash.metric_choices(runs)
    chosen_metrics = bar.multiselect(
        "Metrics", metrics, default=dash.default_metrics(metrics), format_func=dash.metric_label, key="metrics"
    )
    subset = bar.selectbox(
        "Subset",
        dash.subset_choices(runs),
        key="subset",
        help="all cases, the cases of one pathology, or of one subgroup (sex, age band, race; gap: max - min over its subgroups)",
    )
    return Filters(chosen_runs, chosen_generators, chosen_metrics, str(subset))


def leaderboard_tab(runs: list[Run], names: list[str], filters: Filters) -> None:
    if not filters.metrics:
        st.info("Choose one or more metrics in the sidebar.")
        return
    board = dash.leaderboard_rows(
        runs, metrics=filters.metrics, generators=filters.generators, subset=filters.subset, names=names
    )
    if board.empty:
        st.info("No rows: choose runs and generators in the sidebar.")
        return
    by = dash.rank_metric(filters.metrics) or filters.metrics[0]
    subset = "all cases" if filters.subset == dash.OVERALL else f"subset {filters.subset}"
    st.caption(markdown_cell(f"{subset}; sorted by {dash.metric_label(by)}, real images first; value [{dash.ci_label(runs)}]."))
    with st.container(key="leaderboard"):  # the page's anchor for the table (.st-key-leaderboard)
        st.dataframe(dash.leaderboard_display(board, metrics=filters.metrics, decimals=DECIMALS), hide_index=True)
    st.caption(dash.MERGE_NOTE)
    st.subheader("Merged leaderboard")
    for title, table in dash.merged_sections(runs, metrics=filters.metrics, generators=filters.generators, decimals=DECIMALS):
        st.markdown(markdown_cell(title))
        with st.container(key=f"merged_{title.replace(' ', '_').lower()}"):
            st.dataframe(table, hide_index=True)


def grid_tab(runs: list[Run], names: list[str], filters: Filters) -> None:
    """``runs`` and ``names`` are all the runs: a run keeps its position (and its case picker) while others are filtered."""
    position = st.selectbox("Run", filters.runs, format_func=names.__getitem__, key="grid_run")
    if position is None:
        return
    run = runs[position]
    if not run.cases:
        st.info(markdown_cell(f"{names[position]} has no cases.jsonl: no case facts to show."))
        return
    ids = sorted(run.cases)
    case_id = st.selectbox(
        "Case",
        ids,
        format_func=lambda c: dash.case_text(run.cases[c]),
        key=f"case_{position}",
        help="positive labels after each case id",
    )
    facts = run.cases[case_id]
    panels = dash.grid_panels(run, case_id, filters.generators)
    for column, panel in zip(st.columns(len(panels)), panels, strict=True):
        with column:
            if panel.pixels is None:
                st.info(markdown_cell(f"{panel.caption}: no image"))
            else:
                st.image(panel.pixels, caption=markdown_cell(panel.caption), width="stretch")
    if run.anatomy_map(case_id) is not None:
        st.caption(markdown_cell(f"Anatomy map: {dash.ANATOMY_LEGEND}."))
    st.text(f"Case {case_id}: view {facts.case.view or '?'}; positive labels: {', '.join(facts.case.positives) or 'none'}")
    boxes = dash.box_rows(facts)
    if boxes.empty:
        st.text("No pathology boxes for this case.")
    else:
        st.dataframe(boxes, hide_index=True)


def pathology_tab(runs: list[Run], names: list[str], filters: Filters) -> None:
    metrics = dash.pathology_metrics(runs)
    if not metrics:
        st.info("These runs have no per-pathology rows (pathology subsets or per-class F1/AUC).")
        return
    metric = st.selectbox("Metric", metrics, format_func=dash.metric_label, key="pathology_metric")
    rows = dash.pathology_rows(runs, metric=metric, generators=filters.generators, names=names)
    if rows.empty:
        st.info("No per-pathology rows for the chosen runs and generators.")
        return
    wide = dash.pathology_table(rows)
    st.dataframe(wide.round(DECIMALS))
    st.bar_chart(wide.T, stack=False, x_label="pathology", y_label=dash.metric_label(metric))


def provenance_tab(runs: list[Run], names: list[str]) -> None:
    for run, name in zip(runs, names, strict=True):
        with st.expander(markdown_cell(f"Provenance: {name}")):
            st.dataframe(dash.provenance_rows(run), hide_index=True)


def main() -> None:
    st.set_page_config(page_title="xreal-bench dashboard", layout="wide")
    st.title("xreal-bench results")
    dirs = dash.run_dirs_from(sys.argv, os.environ)
    if not dirs:
        st.error("No run directories: start this page with `xreal-bench dashboard RUN_DIR...`.")
        st.stop()
        return
    try:
        runs = cached_runs(tuple(str(d) for d in dirs), tuple(results_stamp(d) for d in dirs))
    except UserFacingError as exc:
        st.error(markdown_cell(str(exc)))
        st.stop()
        return
    names = dash.run_names(runs)
    filters = sidebar(runs, names)
    chosen = [runs[k] for k in filters.runs]
    chosen_names = [names[k] for k in filters.runs]
    if any(run.demo for run in chosen):
        st.warning(DEMO_WARNING)
    difference = dash.fingerprint_difference(chosen, chosen_names)
    if difference:
        st.warning(markdown_cell(difference))
    board, grid, pathology, provenance = st.tabs(["Leaderboard", "Sample grid", "Per pathology", "Provenance"])
    with board:
        leaderboard_tab(chosen, chosen_names, filters)
    with grid:
        grid_tab(runs, names, filters)
    with pathology:
        pathology_tab(chosen, chosen_names, filters)
    with provenance:
        provenance_tab(chosen, chosen_names)


if __name__ == "__main__":  # Streamlit runs the script as __main__; a spawned worker importing it must not
    main()
