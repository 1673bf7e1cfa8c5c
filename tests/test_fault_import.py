"""`xreal-bench import` with hostile and messy input: names that would be paths, several files for
one image, files of other types, re-imports with another identity. Nothing is guessed; counts are true."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from xreal_bench.cli import main
from xreal_bench.config import config_from_dict
from xreal_bench.errors import UserFacingError
from xreal_bench.identity import IdentityError, check_generator_dir
from xreal_bench.imaging import Geometry, quantize, save_png
from xreal_bench.importer import ImportRefused, import_folder
from xreal_bench.names import InvalidNameError
from xreal_bench.rundir import GeneratorDir
from xreal_bench.types import Case

CASES = [Case(f"c{i}", Path(f"/data/c{i}.jpg"), "10000000", "50000000", "PA", (0,) * 14) for i in range(8)]


def image(path: Path, value: float = 0.5, size: int = 48) -> None:
    save_png(path, quantize(np.full((size, size), value, np.float32)))


def do_import(source: Path, out: Path, *, name: str = "mine", resolution: int = 161, overwrite: bool = False):
    return import_folder(
        source,
        out=out,
        name=name,
        cases=CASES,
        resolution=resolution,
        bits=8,
        geometry=Geometry("crop"),
        overwrite=overwrite,
        progress=False,
    )


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def messy(tmp_path) -> Path:
    """7 importable images, plus 3 .txt, 1 .dcm, 2 hidden, 1 without extension, 1 invalid name, 1 unmatched."""
    src = tmp_path / "src"
    for name in ("c0.png", "c1.jpg", "c2_1.png", "sub/c3.tif", "sub/deeper/c4_0.bmp", "c5.jpeg", "c6_2.png"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        image(src / name)
    for name in ("notes.txt", "sub/readme.txt", "c7.txt", "c7.dcm", "README", ".DS_Store", ".cache/c7.png"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"not an image")
    image(src / "c7 copy.png")  # a name that would not be a safe file stem
    image(src / "unknown_case.png")
    return src


def test_counts_are_true_and_skipped_files_are_listed_by_reason(messy, tmp_path):
    report = do_import(messy, tmp_path / "run")
    assert report.imported == 7
    assert {reason: len(files) for reason, files in report.skipped.items()} == {
        ".txt": 3,
        "hidden": 2,
        ".dcm": 1,
        "no extension": 1,
        "invalid name": 1,
    }
    assert report.skipped["hidden"] == [".DS_Store", ".cache/c7.png"] and report.skipped["invalid name"] == ["c7 copy.png"]
    assert report.unmatched == ["unknown_case.png"] and report.unreadable == []
    assert report.describe("mine") == (
        "mine: imported 7 image(s); skipped: 3 .txt, 2 hidden, 1 .dcm, 1 invalid name, 1 no extension; "
        "1 file name(s) match no case, e.g. unknown_case.png"
    )
    gdir = GeneratorDir(tmp_path / "run", "mine")
    assert sorted(gdir.entries()) == [("c0", 0), ("c1", 0), ("c2", 1), ("c3", 0), ("c4", 0), ("c5", 0), ("c6", 2)]
    assert len(list(gdir.images.glob("*.png"))) == 7
    again = do_import(messy, tmp_path / "run")  # the same import again: still 7, one manifest line each
    assert again.imported == 7 and len(gdir.manifest.read_text().splitlines()) == 7
    identity = json.loads(gdir.identity.read_text())
    assert identity["type"] == "imported"
    assert identity["fields"] == {
        "import.source": str(messy.resolve()),
        "run.resolution": 161,
        "run.bit_depth": 8,
        "dataset.square": "crop",
        "dataset.intensity": "none",
    }


def test_several_files_for_one_image_refuse_the_whole_import(messy, tmp_path):
    image(messy / "c0.jpg", 0.9)  # c0.png is sample 0 too
    image(messy / "other" / "c0_0.png", 0.1)  # and so is c0_0
    image(messy / "c2_01.png", 0.2)  # c2_1.png's sample 1 written another way
    with pytest.raises(ImportRefused) as caught:
        do_import(messy, tmp_path / "run")
    assert str(caught.value) == (
        f"5 files in {messy} map to 2 image(s) (<case_id>.<ext> is sample 0, <case_id>_<k>.<ext> sample k); nothing was imported:\n"
        "  c0 sample 0: c0.jpg, c0.png, other/c0_0.png\n"
        "  c2 sample 1: c2_01.png, c2_1.png\n"
        "Keep one file per image (rename or remove the others) and import again."
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["..", "", ".", "../x", "/abs", ".hidden", "real"])
def test_hostile_target_names_are_refused_before_anything_is_written(messy, tmp_path, name):
    with pytest.raises(InvalidNameError, match=re.escape(f"--generator {name!r}")):
        do_import(messy, tmp_path / "project" / "run", name=name)
    assert files_under(tmp_path / "project") == [] and not (tmp_path / "x").exists()


@pytest.mark.parametrize(("name", "why"), [("../x", "is not a valid name"), ("real", "is reserved"), ("", "is not a valid name")])
def test_cli_refuses_names_at_parse_time(messy, tmp_path, capsys, name, why):
    config = tmp_path / "bench.toml"
    config.write_text(f'[run]\nout = "{tmp_path / "run"}"\n')
    with pytest.raises(SystemExit) as caught:
        main(["import", "--config", str(config), "--generator", name, "--from", str(messy)])
    assert caught.value.code == 2
    assert f"argument --generator: --generator {name!r} {why}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "x").exists()


def test_importing_into_a_folder_of_another_identity_is_refused(messy, tmp_path):
    out = tmp_path / "run"
    do_import(messy, out)
    gdir = GeneratorDir(out, "mine")
    before = files_under(gdir.root), gdir.manifest.read_bytes()
    with pytest.raises(IdentityError, match=re.escape("  run.resolution: 161 -> 192\nNothing was imported.")):
        do_import(messy, out, resolution=192)
    other = tmp_path / "other"
    image(other / "c0.png", 0.1)
    with pytest.raises(IdentityError, match=re.escape(f'  import.source: "{messy.resolve()}" -> "{other.resolve()}"')):
        do_import(other, out)
    assert (files_under(gdir.root), gdir.manifest.read_bytes()) == before
    report = do_import(other, out, overwrite=True)  # the way out: replace the earlier import
    assert report.imported == 1 and sorted(gdir.entries()) == [("c0", 0)]
    assert json.loads(gdir.identity.read_text())["fields"]["import.source"] == str(other.resolve())


def test_importing_into_a_generated_or_foreign_folder_is_refused(messy, tmp_path):
    out = tmp_path / "run"
    generated = GeneratorDir(out, "gen")
    generated.root.mkdir(parents=True)
    generated.identity.write_text(json.dumps({"format": 1, "type": "generated", "generator": "gen", "fields": {}}))
    with pytest.raises(IdentityError, match="holds images generated by a configured generator"):
        do_import(messy, out, name="gen")
    foreign = GeneratorDir(out, "foreign")
    image(foreign.images / "holiday.png")
    with pytest.raises(IdentityError, match="no identity.json .* so --overwrite will not delete it. Nothing was imported. Move"):
        do_import(messy, out, name="foreign")
    with pytest.raises(UserFacingError, match="--overwrite: .*foreign was not made by xreal-bench"):
        do_import(messy, out, name="foreign", overwrite=True)
    assert files_under(foreign.root) == ["images/holiday.png"]


def test_overlapping_source_and_target_are_refused(tmp_path):
    out = tmp_path / "run"
    image(out / "mine" / "images" / "c0_0.png")
    with pytest.raises(ImportRefused, match="overlap"):
        do_import(out / "mine", out)
    with pytest.raises(ImportRefused, match="overlap"):
        do_import(tmp_path, out)


def test_evaluate_checks_an_imported_folders_pixel_format(messy, tmp_path):
    out = tmp_path / "run"
    do_import(messy, out)
    gdir = GeneratorDir(out, "mine")
    same = config_from_dict({"run": {"out": str(out), "resolution": 161, "seed": 9, "samples_per_condition": 3}})
    check_generator_dir(same, gdir, weights=None)  # seed and samples are not an import's identity
    for change, line in [
        ({"run": {"resolution": 192}}, "  run.resolution: 161 -> 192"),
        ({"run": {"resolution": 161, "bit_depth": 16}}, "  run.bit_depth: 8 -> 16"),
        ({"run": {"resolution": 161}, "dataset": {"square": "pad"}}, '  dataset.square: "crop" -> "pad"'),
        ({"run": {"resolution": 161}, "dataset": {"intensity": "minmax"}}, '  dataset.intensity: "none" -> "minmax"'),
    ]:
        cfg = config_from_dict({**change, "run": {"out": str(out), **change["run"]}})
        with pytest.raises(IdentityError, match=re.escape(line)):
            check_generator_dir(cfg, gdir, weights=None)
