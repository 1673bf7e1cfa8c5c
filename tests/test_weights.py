"""The weights manager: locations, missing-file messages, offline verification, CLI."""

from __future__ import annotations

import hashlib

import pytest

from xreal_bench.cli import main
from xreal_bench.weights import Artifact, MissingWeightsError, WeightsManager, collect_artifacts, weights_dir


def test_folder_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XREAL_BENCH_WEIGHTS", str(tmp_path / "env"))
    assert weights_dir("") == tmp_path / "env"
    assert weights_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"
    monkeypatch.delenv("XREAL_BENCH_WEIGHTS")
    assert str(weights_dir("")).endswith(".cache/xreal-bench/weights")


def test_missing_file_message_says_what_where_and_how(tmp_path):
    manager = WeightsManager(tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        manager.require("xrv-pspnet")
    message = str(info.value)
    assert "missing weights 'xrv-pspnet'" in message
    assert f"file not found: {tmp_path}/torchxrayvision/pspnet_chestxray_best_model_4.pth" in message
    assert "xreal-bench weights fetch xrv-pspnet" in message
    assert "releases/download/v1/pspnet_chestxray_best_model_4.pth" in message


def test_gated_snapshot_folder_lists_missing_files(tmp_path):
    manager = WeightsManager(tmp_path)
    folder = manager.path("rad-dino")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError) as info:
        manager.require("rad-dino")
    assert (
        "model.safetensors" in str(info.value) and "config.json" not in str(info.value).split("source")[0].split("not found")[1]
    )


def test_no_public_source_says_so(tmp_path):
    message = WeightsManager(tmp_path).missing_message("xreal-controlnet", [WeightsManager(tmp_path).path("xreal-controlnet")])
    assert "not public" in message and "weights fetch" not in message


def test_verify_checks_size_and_hash_offline(tmp_path):
    data = b"weights" * 100
    good = Artifact("toy", "toy.bin", "nowhere", "MIT", "toy", sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    manager = WeightsManager(tmp_path, {"toy": good})
    (tmp_path / "toy.bin").write_bytes(data)
    assert manager.verify("toy").present and "matches manifest" in manager.verify("toy").detail
    assert manager.file_hash("toy") == hashlib.sha256(data).hexdigest()
    (tmp_path / "toy.bin").write_bytes(data[:-1] + b"X")
    assert not manager.verify("toy").present and "sha256" in manager.verify("toy").detail


def test_fetch_fails_offline_with_advice(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="place it at"):
        WeightsManager(tmp_path).fetch("inception-fid")
    assert not list(tmp_path.rglob("*.part"))


def test_every_artifact_has_source_licence_location_and_a_user():
    catalog = collect_artifacts()
    assert not catalog.problems
    assert {"xrv-pspnet", "inception-fid", "xreal-backbone", "bert-tokenizer", "demo-classifier", "roentgen-v2"} <= set(
        catalog.artifacts
    )
    for name, art in catalog.artifacts.items():
        assert art.name == name and art.source and art.license and art.path and art.description
    assert catalog.users["xreal-backbone"] == ["generator controlnet", "generator xreal"]
    assert catalog.users["xrv-pspnet"] == ["segmenter evaluator xrv-pspnet"]


def test_cli_list_path_verify(tmp_path, capsys):
    assert main(["weights", "--dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "missing  xreal-backbone" in out and str(tmp_path) in out
    assert main(["weights", "--dir", str(tmp_path), "path", "cheff-diff-t2i"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cheff/cheff_diff_t2i.pt")
    assert main(["weights", "--dir", str(tmp_path), "path", "nope"]) == 2
    assert "unknown artifact 'nope'" in capsys.readouterr().err
