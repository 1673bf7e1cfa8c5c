"""Report figures: files and panels read back, rank correlations against scipy, legibility (no overlapping
texts, fonts >= 7 pt), colours that survive grayscale and text colours chosen by cell luminance."""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image
from report_runs import write_run
from scipy.stats import kendalltau, spearmanr

from xreal_bench.errors import UserFacingError
from xreal_bench.reports import figures, palette
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import load_run
from xreal_bench.reports.scatter import FEW_GENERATORS, NO_VARIATION, rank_correlations

GENERATORS = ("roentgen", "cheff", "xreal", "controlnet")
INPUTS = {"roentgen": ["labels"], "cheff": ["report"], "xreal": ["anatomy", "labels"], "controlnet": ["anatomy"]}
FID = (40.0, 55.0, 70.0, 85.0)
F1 = (0.40, 0.50, 0.45, 0.60)  # against FID: Spearman 0.8, Kendall 4/6
AUC = (0.80, 0.70, 0.75, 0.60)  # against FID: Spearman -0.8, Kendall -4/6
ORDER = ["real", "cheff", "roentgen", "controlnet", "xreal"]  # reference; text-to-image; spatial control


def sources(generators=GENERATORS) -> dict[str, dict[str, float]]:
    found = {"real": {"fid": 3.0, "fid_xrv": 0.4, "f1_macro": 0.7, "auc_macro": 0.9, "f1/Cardiomegaly": 0.95, "f1/Edema": 0.9}}
    found["real"]["auc/Edema"] = 0.97
    for k, g in enumerate(generators):
        found[g] = {"fid": FID[k], "fid_xrv": 5.0 + k, "f1_macro": F1[k], "auc_macro": AUC[k], "f1/Cardiomegaly": 0.1 + 0.1 * k}
        found[g]["auc/Edema"] = 0.6 + 0.05 * k
        if k:
            found[g]["f1/Edema"] = 0.3 + 0.1 * k  # the first generator has none: a "–" cell
    return found


def make_run(out, generators=GENERATORS, **kwargs):
    per_case = {
        g: {"ms_ssim": [0.3 + 0.05 * k + 0.01 * i for i in range(6)], "dice": [0.5 + 0.1 * k] * 6}
        for k, g in enumerate(["real", *generators])
    }
    path = write_run(out, sources=sources(generators), per_case=per_case, n_cases=6, inputs=INPUTS, **kwargs)
    frame = pd.read_csv(path / "results.csv")
    extra = [
        {"generator": g, "metric": "fid", "subset": subset, "value": value, "ci_low": value - 1, "ci_high": value + 1, "n": 3}
        for g, base in zip(["real", *generators], (2.0, *FID))
        for subset, value in (("Edema", base + 5), ("Cardiomegaly", base + 9))
    ]
    pd.concat([frame, pd.DataFrame(extra)], ignore_index=True).to_csv(path / "results.csv", index=False)
    return load_run(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("figures") / "run")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    return [
        make_run(root / "monday", run_id="mon", written="2026-11-16T10:00:00+00:00"),
        make_run(root / "friday", generators=("cheff", "xreal"), run_id="fri", written="2026-11-20T10:00:00+00:00"),
    ]


READER = pd.DataFrame(
    [
        {"generator": g, "criterion": "anatomy_realism", "mean": m, "ci_low": m - 0.2, "ci_high": m + 0.3}
        for g, m in zip(GENERATORS, (2.0, 3.0, 4.0, 3.5))
    ]
    + [{"generator": "real", "criterion": "anatomy_realism", "mean": 4.5, "ci_low": 4.3, "ci_high": 4.7}]
)


def analysed_study(folder):
    """A study folder as `study analyze` leaves it, as far as the Likert figure reads it."""
    (folder / "analysis").mkdir(parents=True)
    rows = [
        {"source": s, "criterion": c, "score": 1 + (k + i) % 5, "block": "rating", "duplicate": False}
        for i, s in enumerate(["real", "xreal"])
        for c in ("anatomy_realism", "pathology_realism")
        for k in range(6)
    ]
    pd.DataFrame(rows).to_csv(folder / "analysis" / "responses.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def written(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    study = analysed_study(tmp_path_factory.mktemp("study"))
    return out, figures.write_figures([run], out, ReportOptions(), reader_scores=READER, study_dir=study)


def visible_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.axison]


def test_write_figures_writes_png_and_pdf_of_each_figure(written):
    out, paths = written
    stems = ["metrics_bars", "pathology_fid", "pathology_f1_macro", "pathology_auc_macro", "fid_vs_clinical", "likert"]
    expected = {f"figures/{s}.{ext}" for s in stems for ext in ("png", "pdf")} | {"fid_vs_clinical.csv"}
    assert {p.relative_to(out).as_posix() for p in paths} == expected
    for path in paths:
        if path.suffix == ".pdf" and path.stem != "likert":  # the study's own figure code writes that one
            assert path.read_bytes().startswith(b"%PDF-") and b"CreationDate" not in path.read_bytes()
    assert figures.write_figures([], out / "none", ReportOptions(figures=False)) == []


def test_bar_figure_has_a_panel_per_headline_metric_and_a_bar_per_source(run, written):
    shown = figures.entries([run])
    assert [e.label for e in shown] == ORDER
    fig = figures.metrics_bars_figure(shown, [run])
    axes = visible_axes(fig)
    assert [ax.get_title() for ax in axes] == ["FID ↓", "FID (XRV) ↓", "MS-SSIM ↑", "Dice ↑", "F1 (macro) ↑", "AUC (macro) ↑"]
    lengths = dict(zip(ORDER, [p.get_width() for p in axes[0].patches]))
    assert lengths == {"real": 3.0, "roentgen": 40.0, "cheff": 55.0, "xreal": 70.0, "controlnet": 85.0}
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ORDER
    assert [p.get_y() + p.get_height() / 2 for p in axes[0].patches] == list(range(5))  # first source on top:
    assert axes[0].get_ylim() == (4.5, -0.5)
    # the PNG as saved: dpi 200 at the figure's size, and the first generator's Okabe-Ito blue in its bars
    with Image.open(written[0] / "figures" / "metrics_bars.png") as png:
        assert png.size == (round(fig.get_figwidth() * 200), round(fig.get_figheight() * 200))
        pixels = np.asarray(png.convert("RGB")).reshape(-1, 3)
    assert (pixels == (0x00, 0x72, 0xB2)).all(axis=1).sum() > 500


def test_bars_survive_grayscale_and_the_reference_is_grey(run, two_runs):
    for runs in ([run], two_runs):
        fig = figures.metrics_bars_figure(figures.entries(runs), runs)
        for ax in visible_axes(fig):
            bars = ax.patches
            for left, right in zip(bars, bars[1:]):
                step = abs(palette.relative_luminance(left.get_facecolor()) - palette.relative_luminance(right.get_facecolor()))
                assert left.get_hatch() != right.get_hatch() or step >= 0.1
    bars = visible_axes(figures.metrics_bars_figure(figures.entries(two_runs), two_runs))[0].patches
    greys = [to_hex(b.get_facecolor()).upper() for b in bars[:2]]
    assert greys == list(palette.REFERENCE_GREYS) and [b.get_hatch() for b in bars[:2]] == [None, None]
    assert all(b.get_hatch() for b in bars[2:])


def test_palette_neighbours_differ_in_luminance_and_hatch():
    styles = palette.source_styles([True, True] + [False] * 14)
    generated = [s for s in styles if not s.reference]
    for a, b in zip(generated, generated[1:]):
        assert abs(palette.relative_luminance(a.colour) - palette.relative_luminance(b.colour)) >= palette.MIN_LUMINANCE_STEP
        assert a.hatch != b.hatch
    assert len({(s.colour, s.hatch) for s in generated}) == 14
    # a hatch drawn in the colour of its bar's face would vanish: it contrasts with the face instead
    assert all(palette.contrast_ratio(s.hatch_colour, s.colour) >= 3 for s in styles)


def test_wcag_luminance_and_text_colour():
    assert palette.relative_luminance("#FFFFFF") == pytest.approx(1.0)
    assert palette.relative_luminance("#000000") == 0.0
    assert palette.contrast_ratio("#767676", "#FFFFFF") == pytest.approx(4.54, abs=0.01)  # WCAG's classic AA grey
    assert palette.text_colour("#F0E442") == palette.DARK_TEXT  # yellow cells: dark text (the issue's bug)
    assert palette.text_colour("#00204D") == palette.LIGHT_TEXT
    cmap = matplotlib.colormaps[palette.HEATMAP_CMAP]
    samples = [cmap(v) for v in np.linspace(0, 1, 256)]
    luminance = [palette.relative_luminance(c) for c in samples]
    assert all(b >= a - 1e-6 for a, b in zip(luminance, luminance[1:])), "grayscale must keep the colormap's order"
    assert min(palette.contrast_ratio(palette.text_colour(c), c) for c in samples) >= 4.5


def test_heatmap_text_contrasts_with_its_cell(run):
    entry = next(m for m in figures.heatmap_metrics() if m.per_class == "f1")
    fig = figures.heatmap_figure(figures.entries([run]), entry, [run])
    ax = visible_axes(fig)[0]
    image = ax.get_images()[0]
    table = figures.pathology_values(figures.entries([run]), entry)
    assert list(table.columns) == ["Cardiomegaly", "Edema"] and list(table.index) == ORDER
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(cells) == table.size
    for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
        text = cells[(i, j)]
        if math.isnan(value):
            assert text.get_text() == "–" and (ORDER[i], j) == ("roentgen", 1)
            continue
        assert text.get_text() == f"{value:.2f}"
        assert palette.contrast_ratio(text.get_color(), image.cmap(image.norm(value))) >= 4.5
    assert cells[(0, 0)].get_color() == palette.DARK_TEXT  # real's 0.95: the lightest (yellow) cell
    assert cells[(2, 0)].get_color() == palette.LIGHT_TEXT  # roentgen's 0.1: the darkest
    assert figures.overlapping_texts(fig) == []
    fid = figures.heatmap_figure(figures.entries([run]), next(m for m in figures.heatmap_metrics() if m.name == "fid"), [run])
    assert visible_axes(fid)[0].get_images()[0].cmap.name.endswith("_r")  # lower is better: lighter = better still


def test_no_text_overlaps_and_fonts_are_legible(run, two_runs):
    shown = figures.entries([run])
    built = [
        figures.metrics_bars_figure(shown, [run]),
        figures.metrics_bars_figure(figures.entries(two_runs), two_runs),
        figures.fid_vs_clinical_figure(figures.scatter_panels(shown, READER)),
        figures.heatmap_figure(shown, figures.heatmap_metrics()[0], [run]),
    ]
    for fig in built:
        assert [(a.get_text(), b.get_text()) for a, b in figures.overlapping_texts(fig)] == []
        assert min(t.get_fontsize() for t in figures.drawn_texts(fig)) >= figures.MIN_FONT_PT


def test_overlap_check_finds_overlapping_and_rotated_labels():
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.text(0.5, 0.5, "first")
    ax.text(0.52, 0.52, "second")
    ax.text(0.5, 0.1, "apart")
    assert [(a.get_text(), b.get_text()) for a, b in figures.overlapping_texts(fig)] == [("first", "second")]
    crowded = Figure(figsize=(2, 2))
    ax = crowded.subplots()
    ax.set_xticks(range(10), [f"generator-{k}" for k in range(10)], rotation=45, ha="right", rotation_mode="anchor")
    assert len(figures.overlapping_texts(crowded)) >= 9


def test_several_runs_name_each_source_with_its_run(two_runs):
    labels = [e.label for e in figures.entries(two_runs)]
    assert labels[:2] == ["real (monday (2026-11-16))", "real (friday (2026-11-20))"]
    assert "xreal (friday (2026-11-20))" in labels and len(labels) == 8


def test_fid_vs_clinical_panels_and_correlations(run, written):
    fig = figures.fid_vs_clinical_figure(figures.scatter_panels(figures.entries([run]), READER))
    axes = visible_axes(fig)
    pairs = [(ax.get_xlabel(), ax.get_ylabel()) for ax in axes]
    clinical = ["Dice ↑", "F1 (macro) ↑", "AUC (macro) ↑", "MS-SSIM ↑", "Reader anatomy ↑"]
    assert pairs == [(x, y) for x in ("FID ↓", "FID (XRV) ↓") for y in clinical]
    assert "ρ = 0.80" in axes[1].get_title() and "τ = 0.67" in axes[1].get_title()
    assert "ρ = \u22120.80" in axes[2].get_title()
    points = [line for line in axes[0].lines if line.get_marker() in palette.MARKERS]
    assert sorted(float(line.get_xdata()[0]) for line in points) == list(FID)  # one point per generator, no real
    csv = pd.read_csv(written[0] / "fid_vs_clinical.csv")
    assert list(csv.columns) == list(figures.SCATTER_COLUMNS)
    row = csv[(csv.distance == "fid") & (csv.clinical == "f1_macro")].iloc[0]
    assert row.n_generators == 4  # real images left out
    assert (row.spearman, row.kendall) == (pytest.approx(0.8), pytest.approx(4 / 6))
    expected = rank_correlations(FID, F1, resamples=figures.CORRELATION_RESAMPLES, seed=figures.CORRELATION_SEED)
    assert (row.spearman_low, row.spearman_high) == (pytest.approx(expected.spearman_low), pytest.approx(expected.spearman_high))
    reader = csv[(csv.distance == "fid") & (csv.clinical == "anatomy_realism")].iloc[0]
    assert reader.spearman == pytest.approx(spearmanr(FID, (2.0, 3.0, 4.0, 3.5)).statistic)


def test_fewer_than_three_generators_give_nan_with_a_note(tmp_path):
    run = make_run(tmp_path / "small", generators=("cheff", "xreal"))
    csv = figures.correlation_table(figures.scatter_panels(figures.entries([run]), None))
    assert len(csv) == 2 * 4  # (FID, FID-XRV) x (Dice, F1, AUC, MS-SSIM)
    assert (csv.n_generators == 2).all() and csv.spearman.isna().all() and (csv.note == FEW_GENERATORS).all()


def test_reader_scores_need_their_columns(run):
    with pytest.raises(UserFacingError, match="lack column\\(s\\) ci_low, ci_high"):
        figures.scatter_panels(figures.entries([run]), READER.drop(columns=["ci_low", "ci_high"]))


def test_rank_correlations_match_scipy_and_a_hand_built_bootstrap():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    y = np.array([2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0])
    result = rank_correlations(x, y, resamples=300, seed=7)
    assert result.n == 8 and result.note == ""
    assert result.spearman == pytest.approx(spearmanr(x, y).statistic)
    assert result.kendall == pytest.approx(kendalltau(x, y).statistic)
    picks = np.random.default_rng(7).integers(0, 8, size=(300, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant resamples (NaN, left out)
        rho = np.array([spearmanr(x[p], y[p]).statistic for p in picks])
        tau = np.array([kendalltau(x[p], y[p]).statistic for p in picks])
    assert (result.spearman_low, result.spearman_high) == tuple(pytest.approx(v) for v in np.nanpercentile(rho, [2.5, 97.5]))
    assert (result.kendall_low, result.kendall_high) == tuple(pytest.approx(v) for v in np.nanpercentile(tau, [2.5, 97.5]))
    assert result.spearman_low < result.spearman < result.spearman_high


def test_rank_correlations_undefined_cases():
    few = rank_correlations([1.0, 2.0, math.nan], [1.0, 2.0, 3.0])
    assert few.n == 2 and math.isnan(few.spearman) and math.isnan(few.kendall_high) and few.note == FEW_GENERATORS
    flat = rank_correlations([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], resamples=50)
    assert flat.n == 3 and math.isnan(flat.spearman) and flat.note == NO_VARIATION


def test_likert_figure_only_for_an_analysed_study(tmp_path):
    assert figures.likert_files(tmp_path, tmp_path / "figures") == []  # no analysis/responses.csv
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "responses.csv").write_text("source,criterion\r\nreal,anatomy_realism\r\n")
    with pytest.raises(UserFacingError, match="missing column\\(s\\) block, duplicate, score"):
        figures.likert_files(tmp_path, tmp_path / "figures")


def test_saved_files_are_reproducible(tmp_path):
    fig = Figure(figsize=(2, 1.5))
    fig.subplots().bar([0, 1], [1.0, 2.0], hatch="//")
    first = figures.save(fig, tmp_path / "a", "f")
    second = figures.save(fig, tmp_path / "b", "f")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.name for p in first] == ["f.png", "f.pdf"]


def test_demo_runs_carry_the_warning_under_each_figure(tmp_path):
    run = make_run(tmp_path / "demo", generators=("cheff",), evaluator="demo:demo-classifier")
    shown = figures.entries([run])
    assert figures.footnote([run], shown) == figures.DEMO_NOTE
    fig = figures.metrics_bars_figure(shown, [run])
    assert fig.get_supxlabel() == figures.DEMO_NOTE
    scatter = figures.fid_vs_clinical_figure(figures.scatter_panels(shown, None), notes=figures.footnote([run], shown))
    assert scatter.get_suptitle().replace("\n", " ").endswith(figures.DEMO_NOTE)


def test_a_generator_repeated_over_runs_counts_once_in_the_correlations(tmp_path):
    """Three generators in three seed runs are three points for ρ and τ, not nine."""
    from report_runs import write_run

    from xreal_bench.reports.runs import load_run

    runs = []
    for seed in range(3):
        sources = {
            "real": {"fid": 0.0},
            **{g: {"fid": 10.0 * (k + 1) + seed, "f1_macro": 0.9 - 0.1 * k} for k, g in enumerate("abc")},
        }
        runs.append(load_run(write_run(tmp_path / f"s{seed}", sources=sources, seed=seed, run_id=f"r{seed}")))
    [panel] = [p for p in figures.scatter_panels(figures.entries(runs), None) if (p.distance, p.clinical) == ("fid", "f1_macro")]
    assert len(panel.points) == 9 and panel.correlation.n == 3
    assert panel.correlation.spearman == pytest.approx(-1.0)
