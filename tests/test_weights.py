"""The weights manager: locations, missing-file messages, offline verification, CLI."""

from __future__ import annotations

import hashlib
import re

import pytest

from xreal_bench.cli import main
from xreal_bench.metrics.evaluators.inception import ARTIFACT as INCEPTION
from xreal_bench.weights import (
    Artifact,
    MissingWeightsError,
    WeightsManager,
    WeightsMismatchError,
    WeightsTrust,
    collect_artifacts,
    weights_dir,
)


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
    status = manager.verify("toy")
    assert status.present and status.verified and status.detail == f"sha256 {good.sha256} matches the published reference"
    assert manager.trust("toy") == WeightsTrust(good.sha256, "verified")
    assert manager.file_hash("toy") == hashlib.sha256(data).hexdigest()
    (tmp_path / "toy.bin").write_bytes(data[:-1] + b"X")
    assert not manager.verify("toy").present and "!= published" in manager.verify("toy").detail
    with pytest.raises(WeightsMismatchError, match=f"refusing to load {tmp_path / 'toy.bin'}: not the published 'toy'"):
        manager.trust("toy")
    (tmp_path / "toy.bin").write_bytes(data + b"!")
    assert manager.verify("toy").detail == f"size {len(data) + 1} != published {len(data)}"


def test_without_a_published_hash_a_file_is_unverified_never_ok(tmp_path):
    data = b"some weights"
    manager = WeightsManager(tmp_path, {"toy": Artifact("toy", "toy.bin", "nowhere", "MIT", "toy")})
    (tmp_path / "toy.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert manager.trust("toy") == WeightsTrust(digest, "unverified (no published hash)")
    status = manager.verify("toy")
    assert status.present and not status.verified and status.detail == f"sha256 {digest} (no published hash)"


def test_hash_prefix_in_the_file_name_is_checked(tmp_path):
    data = b"inception weights"
    digest = hashlib.sha256(data).hexdigest()
    art = Artifact("toy", f"weights-{digest[:8]}.pth", "nowhere", "MIT", "toy", sha256_prefix=digest[:8])
    manager = WeightsManager(tmp_path, {"toy": art})
    manager.path(art).write_bytes(data)
    assert manager.trust(art).verified
    manager.path(art).write_bytes(b"other weights")
    with pytest.raises(WeightsMismatchError, match=f"does not start with {digest[:8]} .the hash prefix in the file name."):
        manager.trust(art)
    assert INCEPTION.sha256_prefix == "6726825d" and INCEPTION.path.endswith("-6726825d.pth")


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
    assert re.search(r"missing +xreal-backbone", out) and str(tmp_path) in out
    assert re.search(r"verified +demo-classifier", out)
    pspnet = tmp_path / "torchxrayvision/pspnet_chestxray_best_model_4.pth"
    pspnet.parent.mkdir()
    pspnet.write_bytes(b"present")
    assert main(["weights", "--dir", str(tmp_path), "list"]) == 0
    assert re.search(r"unverified +xrv-pspnet +\S+ +\(no published hash\)", capsys.readouterr().out)
    assert main(["weights", "--dir", str(tmp_path), "verify", "xrv-pspnet"]) == 0
    assert capsys.readouterr().out.startswith("unverified  xrv-pspnet: sha256 ")
    assert main(["weights", "--dir", str(tmp_path), "path", "cheff-diff-t2i"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cheff/cheff_diff_t2i.pt")
    assert main(["weights", "--dir", str(tmp_path), "path", "nope"]) == 2
    assert "unknown artifact 'nope'" in capsys.readouterr().err


def test_list_commands_read_the_weights_folder_from_bench_toml(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text('[weights]\ndir = "from-toml"\n')
    pspnet = tmp_path / "from-toml/torchxrayvision/pspnet_chestxray_best_model_4.pth"
    pspnet.parent.mkdir(parents=True)
    pspnet.write_bytes(b"present")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("weights folder: from-toml\n") and re.search(r"unverified +xrv-pspnet", out)
    assert main(["weights", "path", "xrv-pspnet"]) == 0
    assert capsys.readouterr().out.strip() == "from-toml/torchxrayvision/pspnet_chestxray_best_model_4.pth"
    assert main(["weights", "list", "--set", 'weights.dir="elsewhere"']) == 0
    assert capsys.readouterr().out.startswith("weights folder: elsewhere\n")
    (tmp_path / "other.toml").write_text('[weights]\ndir = "other"\n')
    assert main(["weights", "verify", "xrv-pspnet", "--config", "other.toml"]) == 1
    assert (
        capsys.readouterr().out
        == "FAIL        xrv-pspnet: missing (1 file(s))  (other/torchxrayvision/pspnet_chestxray_best_model_4.pth)\n"
    )
    assert main(["weights", "--dir", "cli", "list"]) == 0  # the command line wins
    assert capsys.readouterr().out.startswith("weights folder: cli\n")

    (tmp_path / "from-toml/cheff").mkdir()
    (tmp_path / "from-toml/cheff/cheff_autoencoder.pt").write_bytes(b"x")
    assert main(["generators", "list"]) == 0
    out = capsys.readouterr().out
    assert "cheff-autoencoder (present)" in out and "cheff-diff-t2i (missing)" in out
    assert main(["generators", "list", "--weights-dir", "cli"]) == 0
    assert "cheff-autoencoder (missing)" in capsys.readouterr().out
    assert main(["generators", "list", "--set", 'weights.dir="nowhere"']) == 0
    assert "cheff-autoencoder (missing)" in capsys.readouterr().out


def fake_hub(calls: list[dict]):
    """A stand-in for ``huggingface_hub.snapshot_download`` that writes what the allow patterns let through."""
    from fnmatch import fnmatch

    published = ["vocab.txt", "tokenizer_config.json", "tokenizer.json", "config.json", "model.safetensors", "flax_model.msgpack"]

    def snapshot_download(repo_id, *, local_dir, allow_patterns=None, **kwargs):
        calls.append({"repo_id": repo_id, "local_dir": local_dir, "allow_patterns": allow_patterns, **kwargs})
        local_dir.mkdir(parents=True, exist_ok=True)
        for name in published:
            if allow_patterns is None or any(fnmatch(name, p) for p in allow_patterns):
                (local_dir / name).write_text(name)
        return str(local_dir)

    return snapshot_download


def test_fetch_downloads_only_the_declared_hub_files(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls: list[dict] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(calls))
    manager = WeightsManager(tmp_path)
    assert main(["weights", "--dir", str(tmp_path), "fetch", "bert-tokenizer"]) == 0
    target = manager.path("bert-tokenizer")
    assert calls == [
        {
            "repo_id": "google-bert/bert-base-uncased",
            "local_dir": target,
            "allow_patterns": ["vocab.txt", "tokenizer_config.json"],
        }
    ]
    assert sorted(p.name for p in target.iterdir()) == ["tokenizer_config.json", "vocab.txt"]
    assert f"fetching bert-tokenizer -> {target}  (only vocab.txt, tokenizer_config.json)" in capsys.readouterr().out
    assert manager.status("bert-tokenizer").present
    # an artifact without fetch_files still gets its whole repository
    manager.fetch("roentgen-v2")
    assert calls[-1]["repo_id"] == "stanfordmimi/RoentGen-v2" and calls[-1]["allow_patterns"] is None


def test_fetch_files_must_cover_the_required_files():
    with pytest.raises(ValueError, match=r"artifact 'tok': fetch_files \('\*\.json',\) leave out required \['vocab.txt'\]"):
        Artifact("tok", "t", "s", "l", "d", kind="dir", files=("vocab.txt", "config.json"), hub_id="x/y", fetch_files=("*.json",))
    assert Artifact("tok", "t", "s", "l", "d", kind="dir", files=("vocab.txt",), fetch_files=("*.txt",)).fetch_files == ("*.txt",)
