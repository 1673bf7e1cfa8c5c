"""Fault injection for issue 11 item 7: every error that used to surface after earlier work
(missing evaluator weights, missing weights of a later generator, inputs the data cannot supply,
threshold_split = split, a missing GPU, a full disk, an unwritable output folder) now stops
`run` / `generate` / `evaluate` before the first image, all problems in one numbered message."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from mimic_tree import write_mimic_tree

from xreal_bench import preflight as preflight_module
from xreal_bench.cli import main
from xreal_bench.generators.artifacts import XREAL_ANATOMY_CONTROLLER
from xreal_bench.generators.cheff import CheffGenerator, CheffOptions
from xreal_bench.generators.roentgen import RoentGenGenerator, RoentGenOptions
from xreal_bench.generators.xreal import XRealGenerator, XRealOptions
from xreal_bench.imaging import save_png
from xreal_bench.preflight import human, png_bytes

#: test-split frontal images of write_mimic_tree(n_random=4) that decode (AP/PA; missing and corrupt ones excluded)
N_CASES = 11


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic_preflight")
    write_mimic_tree(root, n_random=4, seed=11)
    return root


def config(tmp_path: Path, data: Path, *, generators: Sequence[str], **sections: dict) -> Path:
    """A TOML config: the defaults below with ``sections``' keys replacing theirs, and one empty table per generator."""
    tables: dict[str, dict] = {
        "dataset": {"kind": "mimic", "root": str(data)},
        "conditioning": {"anatomy": "none"},
        "metrics": {"evaluators": "demo", "enabled": ["fid", "f1_macro"], "num_workers": 0},
        "run": {"out": str(tmp_path / "run"), "samples_per_condition": 2, "resolution": 192},
    }
    for name, values in sections.items():
        tables[name].update(values)
    lines = [f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()) for name, values in tables.items()]
    path = tmp_path / "bench.toml"
    path.write_text("\n".join(lines + [f"[generators.{g}]\n" for g in generators]))
    return path


def case_ids(data: Path) -> list[str]:
    from xreal_bench.data.mimic import scan_mimic

    ids = [c.case_id for c in scan_mimic(data, progress=False).cases]
    assert len(ids) == N_CASES
    return ids


def refused(capsys, *argv: str) -> str:
    """Run the CLI, assert it stopped with exit 2 and no traceback; the error text."""
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def numbered(err: str) -> list[str]:
    return re.findall(r"^(\d+)\. ", err, flags=re.MULTILINE)


def no_images(out: Path) -> bool:
    return not list(out.rglob("*.png"))


def test_missing_weights_of_a_later_generator_stop_before_the_first(tmp_path, data, capsys):
    cfg = config(tmp_path, data, generators=["noise", "cheff"])
    err = refused(capsys, "generate", "--config", str(cfg))
    for name in ("cheff-autoencoder", "cheff-diff-t2i", "bert-tokenizer"):
        assert f"missing weights {name!r}" in err and f"xreal-bench weights path {name}" in err
    assert "needed by: generator 'cheff' (cheff)" in err
    assert "cheff-sr" not in err  # super_resolution is off: its weights are not required
    assert numbered(err) == ["1", "2", "3"]
    assert not (tmp_path / "run" / "noise").exists() and no_images(tmp_path / "run")


def test_options_choose_the_required_artifacts():
    names = {a.name for a in CheffGenerator.required_artifacts(CheffOptions(super_resolution=True))}
    assert names == {"cheff-autoencoder", "cheff-diff-t2i", "bert-tokenizer", "cheff-sr-fine"}
    assert XREAL_ANATOMY_CONTROLLER in XRealGenerator.required_artifacts(XRealOptions())
    assert XREAL_ANATOMY_CONTROLLER not in XRealGenerator.required_artifacts(XRealOptions(mode="edit"))
    assert [a.name for a in RoentGenGenerator.required_artifacts(RoentGenOptions(version="v1"))] == ["roentgen-v1"]


def test_missing_evaluator_weights_stop_run_before_generation(tmp_path, data, capsys):
    cfg = config(
        tmp_path,
        data,
        generators=["noise"],
        metrics={"evaluators": "standard", "enabled": ["fid", "fid_xrv", "f1_macro"], "thresholds": "calibrated"},
    )
    err = refused(capsys, "run", "--config", str(cfg))
    assert "missing weights 'inception-fid'" in err and "feature evaluator 'inception' (metrics fid)" in err
    assert err.count("missing weights 'xrv-densenet-mimic_ch'") == 1  # fid_xrv and f1 share one file
    assert "feature evaluator 'xrv-densenet-features' (metrics fid_xrv)" in err
    assert "classifier evaluator 'xrv-densenet-mimic_ch' (metrics f1_macro)" in err
    assert "xrv-densenet-chex" not in err and "xrv-densenet-all" not in err  # only the tag that is loaded
    assert "xrv-pspnet" not in err  # dice is not enabled
    assert len(numbered(err)) == 2 and no_images(tmp_path / "run")


def test_inputs_the_data_cannot_supply(tmp_path, data, capsys):
    cfg = config(tmp_path, data, generators=["noise", "phantom"])
    err = refused(capsys, "generate", "--config", str(cfg))
    assert "generator 'phantom' (phantom) needs inputs this run cannot supply: anatomy" in err
    assert "anatomy: [conditioning].anatomy = 'none'" in err
    assert numbered(err) == ["1"] and no_images(tmp_path / "run")


def test_missing_anatomy_maps_of_a_folder_are_found_first(tmp_path, data, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    conditioning = {"anatomy": "folder", "anatomy_dir": str(maps)}
    metrics = {"evaluators": "standard", "enabled": ["dice"], "dice_reference": "input"}
    cfg = config(tmp_path, data, generators=["noise", "phantom"], conditioning=conditioning, metrics=metrics)
    err = refused(capsys, "run", "--config", str(cfg))
    assert err.count(f"{N_CASES} of {N_CASES} cases have no anatomy map in {maps}") == 1  # generation and Dice need them
    assert "missing weights 'xrv-pspnet'" in err and "needed by: segmenter evaluator 'xrv-pspnet' (metrics dice)" in err
    assert numbered(err) == ["1", "2"] and no_images(tmp_path / "run")


def test_pspnet_anatomy_needs_its_weights_before_generation(tmp_path, data, capsys):
    cfg = config(tmp_path, data, generators=["noise", "phantom"], conditioning={"anatomy": "pspnet"})
    err = refused(capsys, "generate", "--config", str(cfg))
    assert "missing weights 'xrv-pspnet'" in err
    assert "needed by: conditioning.anatomy = 'pspnet' (anatomy maps for the generators' conditions)" in err
    assert numbered(err) == ["1"] and no_images(tmp_path / "run")


def test_evaluate_lists_unknown_folders_with_missing_weights(tmp_path, data, capsys):
    cfg = config(tmp_path, data, generators=["noise"], metrics={"evaluators": "standard", "enabled": ["fid"]})
    err = refused(capsys, "evaluate", "--config", str(cfg), "--generators", "dalle")
    assert f"1. no generated images for dalle in {tmp_path / 'run'}; generated: none" in err
    assert "2. missing weights 'inception-fid'" in err and numbered(err) == ["1", "2"]
    assert not (tmp_path / "run" / ".cache").exists()  # no real-side pass


def test_a_missing_box_csv_is_found_first(tmp_path, data, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    for case_id in case_ids(data):
        (maps / f"{case_id}.png").touch()  # present; their content is read only when preparing
    boxes = tmp_path / "no-such-boxes.csv"
    conditioning = {"anatomy": "folder", "anatomy_dir": str(maps), "boxes_csv": str(boxes)}
    cfg = config(tmp_path, data, generators=["noise", "phantom"], conditioning=conditioning)
    err = refused(capsys, "generate", "--config", str(cfg))
    assert f"1. box CSV not found: {boxes}" in err and numbered(err) == ["1"] and no_images(tmp_path / "run")


def test_threshold_split_equal_to_the_evaluated_split(tmp_path, data, capsys):
    cfg = config(
        tmp_path,
        data,
        generators=["noise"],
        metrics={"thresholds": "youden", "threshold_split": "validate"},
        dataset={"split": "validate"},
    )
    err = refused(capsys, "run", "--config", str(cfg))
    assert "metrics.threshold_split = 'validate' is the evaluated split (dataset.split): youden thresholds" in err
    assert numbered(err) == ["1"] and no_images(tmp_path / "run")


def test_threshold_split_without_images(tmp_path, data, capsys):
    cfg = config(
        tmp_path,
        data,
        generators=["noise"],
        metrics={"thresholds": "f1", "threshold_split": "train"},
        dataset={"views": ["AP"]},
    )
    err = refused(capsys, "run", "--config", str(cfg))
    assert f"no real images in split 'train' (views AP) of {data / 'mimic-cxr-2.0.0-split.csv'} to fit f1 thresholds" in err
    assert no_images(tmp_path / "run")


def test_calibrated_thresholds_need_no_threshold_split(tmp_path, data):
    """The same split with calibrated thresholds is fine: the run goes through."""
    cfg = config(tmp_path, data, generators=["noise"], metrics={"threshold_split": "validate"}, dataset={"split": "validate"})
    assert main(["generate", "--config", str(cfg), "--quiet"]) == 0


def test_cuda_without_a_gpu(tmp_path, data, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = config(tmp_path, data, generators=["noise"], run={"device": "cuda"})
    err = refused(capsys, "generate", "--config", str(cfg))
    assert "run.device = 'cuda' but no CUDA GPU is available" in err and "set run.device = 'auto' or 'cpu'" in err
    assert numbered(err) == ["1"] and no_images(tmp_path / "run")


def test_disk_too_small_names_what_would_be_written(tmp_path, data, capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    cfg = config(tmp_path, data, generators=["noise", "shuffled"])
    err = refused(capsys, "generate", "--config", str(cfg))
    images = N_CASES * 2
    assert "not enough free disk space on" in err and "1000 B is free" in err
    assert f"{images} noise image(s) of 192 px at 8 bit: {human(images * png_bytes(192, 8))}" in err
    assert f"{images} shuffled image(s) of 192 px at 8 bit" in err
    assert numbered(err) == ["1"] and no_images(tmp_path / "run")


def test_disk_estimate_counts_images_already_there(tmp_path, data, monkeypatch):
    """A resumed run needs room only for the images still to make: enough free space for them passes."""
    cfg = config(tmp_path, data, generators=["noise"])
    assert main(["generate", "--config", str(cfg), "--quiet"]) == 0
    needed = preflight_module.REPORT_BYTES + 4096 * N_CASES  # results and case facts; every image is there
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=needed))
    assert main(["generate", "--config", str(cfg), "--quiet"]) == 0
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=needed - 1))
    assert main(["generate", "--config", str(cfg), "--quiet"]) == 2


@pytest.mark.parametrize("bits", [8, 16])
def test_png_bound_holds_for_incompressible_images(tmp_path, bits):
    rng = np.random.default_rng(0)
    for size in (161, 256, 512):
        dtype = np.uint8 if bits == 8 else np.uint16
        pixels = rng.integers(0, np.iinfo(dtype).max, size=(size, size), dtype=dtype, endpoint=True)
        save_png(tmp_path / "x.png", pixels)
        assert (tmp_path / "x.png").stat().st_size <= png_bytes(size, bits)


def ignores_permissions(folder: Path) -> bool:
    """Root with CAP_DAC_OVERRIDE writes into a 0o555 folder anyway (a real probe, not just the uid)."""
    try:
        (folder / "probe").touch()
    except PermissionError:
        return False
    return True


def test_read_only_output_folder(tmp_path, data, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    cfg = config(tmp_path, data, generators=["noise"], run={"out": str(locked / "run")})
    locked.chmod(0o555)
    try:
        if os.geteuid() == 0 and ignores_permissions(locked):
            pytest.skip("running as root with CAP_DAC_OVERRIDE: permission bits are not enforced")
        err = refused(capsys, "generate", "--config", str(cfg))
    finally:
        locked.chmod(0o755)
    assert f"cannot use output folder {locked / 'run'}: creating it inside {locked} failed (Permission denied)" in err


def test_output_folder_that_refuses_files(tmp_path, data, capsys, monkeypatch):
    """A folder where creating a file fails (read-only file system, as root too): named with the operation."""
    out = tmp_path / "run"
    out.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if Path(dir) == out:
            raise OSError(30, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    cfg = config(tmp_path, data, generators=["noise"])
    err = refused(capsys, "generate", "--config", str(cfg))
    assert f"cannot use output folder {out}: writing a file into it failed (Read-only file system)" in err
    assert no_images(tmp_path / "run")


def test_a_file_in_the_way_of_the_output_folder(tmp_path, data, capsys):
    (tmp_path / "blocker").write_text("not a folder")
    cfg = config(tmp_path, data, generators=["noise"], run={"out": str(tmp_path / "blocker" / "run")})
    err = refused(capsys, "generate", "--config", str(cfg))
    assert f"cannot use output folder {tmp_path / 'blocker' / 'run'}: cannot create it: {tmp_path / 'blocker'} is a file" in err


def test_every_problem_at_once(tmp_path, data, capsys, monkeypatch):
    """Seven kinds of fault in one config: one message, numbered, each named, nothing generated."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    cfg = config(
        tmp_path,
        data,
        generators=["noise", "phantom", "cheff"],
        metrics={"evaluators": "standard", "enabled": ["f1_macro"], "thresholds": "youden", "threshold_split": "validate"},
        dataset={"split": "validate"},
        run={"device": "cuda:1"},
    )
    err = refused(capsys, "run", "--config", str(cfg))
    expected = [
        "run.device = 'cuda:1' but no CUDA GPU is available",
        "generator 'phantom' (phantom) needs inputs this run cannot supply: anatomy",
        "generator 'cheff' (cheff) needs inputs this run cannot supply: text",  # the validate case has no report
        "metrics.threshold_split = 'validate' is the evaluated split",
        "missing weights 'cheff-autoencoder'",
        "missing weights 'cheff-diff-t2i'",
        "missing weights 'bert-tokenizer'",
        "missing weights 'xrv-densenet-mimic_ch'",
        "not enough free disk space on",
    ]
    positions = [err.find(text) for text in expected]
    assert -1 not in positions, [t for t, p in zip(expected, positions) if p < 0]
    assert positions == sorted(positions)
    assert numbered(err) == [str(i) for i in range(1, len(expected) + 1)]
    assert err.splitlines()[0] == f"error: {len(expected)} problem(s) found before any work (nothing was generated or evaluated):"
    assert no_images(tmp_path / "run")
