"""The sample grid: rows x columns, labels, the seeded case choice, overlays and the PNG read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.patches import Rectangle
from PIL import Image
from report_runs import case_ids, write_run

from xreal_bench.errors import UserFacingError
from xreal_bench.reports import figures, grid
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.palette import ANATOMY_COLOURS
from xreal_bench.reports.runs import load_run
from xreal_bench.types import Box

IDS = case_ids(8)
LABELS = ("Cardiomegaly", "Edema", "Pleural Effusion", "No Finding")  # report_runs.make_cases: case k has LABELS[k % 4]
SOURCES = {"real": {"fid": 1.0}, "cheff": {"fid": 3.0}, "xreal": {"fid": 2.0}}


def label_map() -> np.ndarray:
    m = np.zeros((32, 32), np.uint8)
    m[6:26, 3:14], m[6:26, 18:29], m[16:26, 12:22], m[4:10, 15:18] = 2, 1, 3, 4
    return m


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    maps = root / "maps"
    maps.mkdir()
    for case_id in IDS[1:]:  # case 0 has no map
        Image.fromarray(label_map()).save(maps / f"{case_id}.png")
    conditioning = {"anatomy": "folder", "anatomy_dir": str(maps), "resolution": 32}
    path = write_run(root / "run", sources=SOURCES, config_extra={"conditioning": conditioning})
    # xreal lost case 5's image: its manifest says failed
    manifest = path / "xreal" / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    for line in lines:
        if line["case_id"] == IDS[5]:
            line["status"], line["file"] = "failed", None
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return load_run(path)


def images_per_row(fig, layout) -> list[list[int]]:
    columns = len(layout.columns)
    return [[len(ax.get_images()) for ax in fig.axes[r * columns : (r + 1) * columns]] for r in range(len(layout.cases))]


def test_grid_rows_columns_labels_and_png(run, tmp_path):
    options = ReportOptions(grid_cases=3, cases=(IDS[2], IDS[3], IDS[0]))
    fig, layout = grid.samples_grid_figure([run], options)
    assert layout.cases == (IDS[2], IDS[3], IDS[0])
    assert layout.columns == ("real", "anatomy map", "pathology boxes", "cheff", "xreal")
    assert len(fig.axes) == 3 * (3 + 2)
    assert layout.row_labels == ("00000002…\nPleural Effusion", "00000003…\nNo Finding", "00000000…\nCardiomegaly")
    assert [ax.get_ylabel() for ax in fig.axes[::5]] == list(layout.row_labels)
    assert [ax.get_title() for ax in fig.axes[:5]] == list(layout.columns)
    # real | map over real | real with box | cheff | xreal; case 0 has no anatomy map
    assert images_per_row(fig, layout) == [[1, 2, 1, 1, 1], [1, 2, 1, 1, 1], [1, 0, 1, 1, 1]]
    assert [t.get_text() for t in fig.axes[11].texts] == ["no anatomy map"]
    assert [t.get_text() for t in fig.axes[7].texts] == ["no box"]  # the No Finding case
    assert figures.overlapping_texts(fig) == []
    paths = grid.write_samples_grid([run], tmp_path, options)
    assert [p.name for p in paths] == ["samples_grid.png", "samples_grid.pdf"]
    with Image.open(paths[0]) as png:
        assert png.size == (round(fig.get_figwidth() * 200), round(fig.get_figheight() * 200))


def test_pixels_are_shown_as_stored_and_overlays_in_place(run):
    fig, _ = grid.samples_grid_figure([run], ReportOptions(cases=(IDS[1],)))
    real, anatomy, boxes, cheff = fig.axes[:4]
    stored = np.asarray(Image.open(run.image_path("cheff", IDS[1])))
    shown = cheff.get_images()[0]
    assert np.array_equal(shown.get_array(), stored) and shown.get_clim() == (0, 255)
    assert np.array_equal(real.get_images()[0].get_array(), np.asarray(Image.open(run.image_path("real", IDS[1]))))
    overlay = anatomy.get_images()[1].get_array()
    heart = label_map() == 3
    assert np.allclose(overlay[heart][:, :3], np.array(Image.new("RGB", (1, 1), ANATOMY_COLOURS[3]).getpixel((0, 0))) / 255)
    assert (overlay[label_map() == 0][:, 3] == 0).all()
    [rect] = [p for p in boxes.patches if isinstance(p, Rectangle)]
    x0, y0, x1, y1 = Box("Edema", 0.2, 0.3, 0.6, 0.7).pixels(32)
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0)
    assert [t.get_text() for t in boxes.texts] == ["Edema"]


def test_missing_images_are_named(run):
    fig, layout = grid.samples_grid_figure([run], ReportOptions(cases=(IDS[5],)))
    xreal = fig.axes[layout.columns.index("xreal")]
    assert xreal.get_images() == [] and [t.get_text() for t in xreal.texts] == ["missing"]


def test_unknown_case_ids_are_named(run):
    with pytest.raises(UserFacingError, match="unknown case id\\(s\\) nope, 123"):
        grid.samples_grid_figure([run], ReportOptions(cases=(IDS[0], "nope", "123")))


def test_seeded_choice_prefers_new_labels_and_complete_cases(run):
    first, _ = grid.samples_grid_figure([run], ReportOptions(grid_cases=4, grid_seed=3))
    again, layout = grid.samples_grid_figure([run], ReportOptions(grid_cases=4, grid_seed=3))
    assert first.axes[0].get_ylabel() == again.axes[0].get_ylabel()
    assert len(layout.cases) == 4 and IDS[5] not in layout.cases  # xreal has no image of case 5
    assert {row.split("\n")[1] for row in layout.row_labels} == set(LABELS)
    seen = {grid.choose_cases(grid.case_facts([run]), [], ReportOptions(grid_cases=2, grid_seed=s))[0] for s in range(12)}
    assert len(seen) > 2  # the seed matters
    everything = grid.choose_cases(grid.case_facts([run]), [], ReportOptions(grid_cases=20))
    assert sorted(everything) == IDS  # K larger than the pool: every case once


def test_no_case_facts_no_grid(run, tmp_path):
    (tmp_path / "cases.jsonl").write_text("")
    bare = type(run)(path=tmp_path, frame=run.frame, provenance={}, coverage={}, per_image=None)
    assert grid.write_samples_grid([bare], tmp_path, ReportOptions()) == []
    with pytest.raises(UserFacingError, match="no case facts"):
        grid.samples_grid_figure([bare], ReportOptions())
