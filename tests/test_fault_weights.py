"""Fault injection on weights: crafted pickles at every artifact path, swapped files, stale caches.

A crafted pickle whose ``__reduce__`` would create a marker file is placed where the suite
loads weights; building the evaluator or generator, ``weights verify`` and the checkpoint door
must refuse it with an error naming the file, and the marker must never appear.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny_ldm import write_bert_vocab

from xreal_bench.cli import main
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.registry import generator_class
from xreal_bench.imaging import Geometry
from xreal_bench.metrics import engine
from xreal_bench.metrics.evaluators import build_evaluator
from xreal_bench.metrics.evaluators.base import FeatureExtractor
from xreal_bench.metrics.evaluators.inception import ARTIFACT as INCEPTION
from xreal_bench.metrics.evaluators.testing import unpublished_release_artifacts
from xreal_bench.metrics.suite import Suite
from xreal_bench.registry import XRV_TAGS
from xreal_bench.safe_load import read_checkpoint, state_dict_of
from xreal_bench.weights import WeightsLoadError, WeightsManager, WeightsMismatchError, cached_sha256


class Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class Carrier(torch.nn.Module):
    """A whole pickled module that carries a payload beside its tensors."""

    def __init__(self, marker: Path):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.extra = Payload(marker)


def craft(path: Path, marker: Path, form: str) -> Path:
    """Write a pickle that would create ``marker`` when fully unpickled, in one of several encodings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = Payload(marker)
    if form == "zip":
        torch.save(payload, path)
    elif form == "legacy":
        torch.save({"state_dict": payload}, path, _use_new_zipfile_serialization=False)
    elif form == "raw":
        path.write_bytes(pickle.dumps({"model": payload}, protocol=2))
    elif form == "nested":
        torch.save({"state_dict": {"w": torch.zeros(2), "hyper": payload}}, path)
    elif form == "module":
        torch.save(Carrier(marker), path)
    return path


FORMS = ("zip", "legacy", "raw", "nested", "module")
EVALUATORS = [
    ("feature", "inception", INCEPTION.name),
    *(("classifier", f"xrv-densenet-{tag}", f"xrv-densenet-{tag}") for tag in XRV_TAGS),
    ("feature", "xrv-densenet-features", "xrv-densenet-mimic_ch"),
    ("segmenter", "xrv-pspnet", "xrv-pspnet"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind,name,artifact", EVALUATORS)
def test_crafted_evaluator_weights_never_run(tmp_path, kind, name, artifact, form):
    marker = tmp_path / "marker"
    manager = WeightsManager(tmp_path / "weights", unpublished_release_artifacts())  # reach the loader, not the hash check
    path = craft(manager.path(artifact), marker, form)
    with pytest.raises(WeightsLoadError) as info:
        build_evaluator(kind, name, weights=manager)
    assert str(path) in str(info.value) and f"weights fetch {artifact}" in str(info.value)
    assert not marker.exists()


def test_crafted_inception_is_refused_by_its_published_hash_prefix(tmp_path):
    marker = tmp_path / "marker"
    manager = WeightsManager(tmp_path)
    path = craft(manager.path(INCEPTION.name), marker, "zip")
    with pytest.raises(WeightsMismatchError) as info:
        build_evaluator("feature", "inception", weights=manager)
    message = str(info.value)
    assert f"refusing to load {path}" in message and "does not start with 6726825d" in message
    assert "xreal-bench weights fetch inception-fid" in message
    assert not marker.exists()


def test_torchscript_archive_is_refused_not_run(tmp_path):
    manager = WeightsManager(tmp_path, unpublished_release_artifacts())
    path = manager.path("xrv-densenet-chex")
    path.parent.mkdir(parents=True)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(WeightsLoadError, match=f"cannot read checkpoint {path}.*TorchScript"):
        build_evaluator("classifier", "xrv-densenet-chex", weights=manager)


def test_payload_beside_module_tensors_stays_inert(tmp_path):
    """A whole-module pickle is read for its tensors; other objects in it are never built."""
    from xreal_bench.safe_load import module_state_dict

    marker = tmp_path / "marker"
    path = craft(tmp_path / "carrier.pt", marker, "module")
    state = module_state_dict(read_checkpoint(path), path)
    assert set(state) == {"linear.weight", "linear.bias"} and not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: a full unpickle runs it
    assert marker.read_text() == "ran"


GENERATOR_FILES = {
    "xreal": ("xreal-backbone", "xreal-ldm-ae", "xreal-anatomy-controller"),
    "controlnet": ("xreal-backbone", "xreal-ldm-ae", "xreal-controlnet"),
    "cheff": ("cheff-autoencoder", "cheff-diff-t2i"),
}


@pytest.mark.parametrize("artifact", sorted({a for files in GENERATOR_FILES.values() for a in files} | {"cheff-sr-fine"}))
@pytest.mark.parametrize("form", FORMS)
def test_generator_checkpoint_door_refuses_crafted_pickles(tmp_path, artifact, form):
    marker = tmp_path / "marker"
    manager = WeightsManager(tmp_path)
    path = craft(manager.path(artifact), marker, form)
    key = "model" if artifact == "cheff-sr-fine" else "state_dict"
    with pytest.raises(WeightsLoadError, match=str(path)):
        state_dict_of(read_checkpoint(path), path, key=key)
    assert not marker.exists()


@pytest.mark.parametrize("generator", sorted(GENERATOR_FILES))
def test_generators_refuse_crafted_checkpoints(tmp_path, generator):
    marker = tmp_path / "marker"
    manager = WeightsManager(tmp_path)
    paths = [craft(manager.path(a), marker, "nested") for a in GENERATOR_FILES[generator]]
    write_bert_vocab(manager.path("bert-tokenizer"))
    cls = generator_class(generator)
    with pytest.raises(UserFacingError) as info:
        cls(generator, cls.Options(), GeneratorContext(weights=manager))
    assert any(str(p) in str(info.value) for p in paths), str(info.value)
    assert not marker.exists()


def test_roentgen_snapshot_with_a_crafted_bin_is_refused(tmp_path):
    """RoentGen loads diffusers snapshots: safetensors, or ``.bin`` through torch's weights_only loader."""
    marker = tmp_path / "marker"
    manager = WeightsManager(tmp_path)
    folder = manager.path("roentgen-v1")
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}'
    )
    unet = {"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D"] * 2, "up_block_types": ["UpBlock2D"] * 2}
    (folder / "unet" / "config.json").write_text(
        json.dumps({"_class_name": "UNet2DConditionModel", "layers_per_block": 1, **unet})
    )
    craft(folder / "unet" / "diffusion_pytorch_model.bin", marker, "zip")
    cls = generator_class("roentgen")
    with pytest.raises(UserFacingError, match=f"cannot load the RoentGen v1 pipeline from {folder}") as info:
        cls("roentgen", cls.Options(version="v1"), GeneratorContext(weights=manager))
    assert "unet/diffusion_pytorch_model.bin" in str(info.value)  # read, and refused by torch's weights_only loader
    assert not marker.exists()


# ----------------------------------------------------------------------------- weights verify / list


def test_verify_and_list_call_crafted_files_unverified_or_failed_never_ok(tmp_path, capsys):
    marker = tmp_path / "marker"
    weights = tmp_path / "weights"
    manager = WeightsManager(weights)
    for name in ("xrv-densenet-chex", "xrv-pspnet", "xreal-backbone", INCEPTION.name):
        craft(manager.path(name), marker, "zip")
    assert main(["weights", "--dir", str(weights), "verify"]) == 1  # the Inception file fails its hash prefix
    out = capsys.readouterr().out.splitlines()
    lines = {line.split()[1].rstrip(":"): line for line in out}
    for name in ("xrv-densenet-chex", "xrv-pspnet", "xreal-backbone"):
        assert lines[name].startswith("unverified") and "(no published hash)" in lines[name]
    assert lines[INCEPTION.name].startswith("FAIL") and "does not start with 6726825d" in lines[INCEPTION.name]
    assert {n for n, line in lines.items() if line.startswith(("ok", "verified"))} == {"demo-classifier", "demo-segmenter"}
    assert main(["weights", "--dir", str(weights), "list"]) == 0
    listed = capsys.readouterr().out
    assert "unverified  xrv-pspnet" in listed and "MISMATCH    inception-fid" in listed and " ok " not in listed
    assert not marker.exists()


# ----------------------------------------------------------------------------- stale hashes


def swap_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    before = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns


def test_same_size_same_mtime_swap_is_rehashed(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"A" * 4096)
    first = cached_sha256(path)
    assert (tmp_path / "w.bin.sha256.json").is_file()
    swap_keeping_size_and_mtime(path, b"B" * 4096)
    import hashlib

    assert cached_sha256(path) == hashlib.sha256(b"B" * 4096).hexdigest() != first
    other = tmp_path / "other.bin"
    other.write_bytes(b"C" * 4096)
    os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    shutil.copy2(other, path)  # cp -p: same size, same mtime, other bytes
    assert cached_sha256(path) == hashlib.sha256(b"C" * 4096).hexdigest()
    replaced = tmp_path / "new.bin"
    replaced.write_bytes(b"D" * 4096)
    os.utime(replaced, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    os.replace(replaced, path)  # rsync -t: a new inode renamed over the old one
    assert cached_sha256(path) == hashlib.sha256(b"D" * 4096).hexdigest()


def test_forged_or_broken_sidecar_is_not_believed_for_a_published_hash(tmp_path):
    import hashlib
    import json

    data = b"real weights"
    art = replace(INCEPTION, sha256=hashlib.sha256(data).hexdigest(), sha256_prefix=None, size=None)
    manager = WeightsManager(tmp_path, {art.name: art})
    path = manager.path(art)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"other bytes!")
    stat = path.stat()
    key = {
        "dev": stat.st_dev,
        "ino": stat.st_ino,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }
    path.with_name(path.name + ".sha256.json").write_text(json.dumps({"key": key, "sha256": art.sha256}))
    with pytest.raises(WeightsMismatchError, match=f"refusing to load {path}"):
        manager.trust(art)
    path.with_name(path.name + ".sha256.json").write_text("{not json")
    assert cached_sha256(path) == hashlib.sha256(b"other bytes!").hexdigest()


def test_a_snapshot_folder_hash_covers_its_weights_not_only_its_listed_files(tmp_path):
    from xreal_bench.weights import Artifact

    art = Artifact(
        name="snap", path="snap", kind="dir", files=("model_index.json",), source="test", license="test", description="a snapshot"
    )
    manager = WeightsManager(tmp_path, {art.name: art})
    folder = manager.path(art)
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"A" * 64)
    first = manager.file_hash(art)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors.sha256.json").is_file()  # sidecars are not content
    (folder / "README.md").write_text("model card")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("x")
    assert manager.file_hash(art) == first
    swap_keeping_size_and_mtime(weights, b"B" * 64)  # a swapped UNet, same size and mtime
    swapped = manager.file_hash(art)
    assert swapped != first
    weights.rename(folder / "unet" / "other.safetensors")  # same bytes under another name: another snapshot
    assert manager.file_hash(art) not in (first, swapped)
    renamed = manager.file_hash(art)
    shared = tmp_path / "shared" / "text_encoder"  # a component linked in from elsewhere is part of the snapshot
    shared.mkdir(parents=True)
    (shared / "model.safetensors").write_bytes(b"C" * 64)
    (folder / "text_encoder").symlink_to(shared, target_is_directory=True)
    (shared / "loop").symlink_to(folder, target_is_directory=True)  # a link loop is walked once
    linked = manager.file_hash(art)
    assert linked != renamed
    swap_keeping_size_and_mtime(shared / "model.safetensors", b"D" * 64)
    assert manager.file_hash(art) != linked


# ----------------------------------------------------------------------------- real-side cache key


class Fixed(FeatureExtractor):
    preprocessing = "none"
    dim = 1

    def __init__(self, weights_hash: str):
        self.name, self.weights_hash, self.device = "fixed", weights_hash, torch.device("cpu")

    def forward(self, images):
        return images.mean(dim=(1, 2, 3))[:, None]


def test_real_cache_key_follows_weights_library_and_code_versions(monkeypatch):
    prep = engine.Preprocessing(256, 8, Geometry("pad"))
    suite = Suite("toy", features={"features": Fixed("a" * 64)})
    base = engine.real_fingerprint("scan", prep, suite)
    assert engine.real_fingerprint("scan", prep, suite) == base
    assert engine.real_fingerprint("scan", prep, Suite("toy", features={"features": Fixed("b" * 64)})) != base
    versions = dict(engine.library_versions())
    assert set(versions) == set(engine.NUMERIC_LIBRARIES) and versions["torch"] == torch.__version__
    for library in engine.NUMERIC_LIBRARIES:
        monkeypatch.setattr(engine, "library_versions", lambda lib=library: {**versions, lib: "0.0.0-other"})
        assert engine.real_fingerprint("scan", prep, suite) != base, library
    monkeypatch.setattr(engine, "library_versions", lambda: versions)
    assert engine.real_fingerprint("scan", prep, suite) == base
    monkeypatch.setattr(engine, "CODE_VERSION", "other")
    assert engine.real_fingerprint("scan", prep, suite) != base
    monkeypatch.undo()
    import xreal_bench

    monkeypatch.setattr(xreal_bench, "__version__", "9.9.9")
    assert engine.real_fingerprint("scan", prep, suite) != base


# ----------------------------------------------------------------------------- shipped demo weights


@pytest.mark.parametrize("change", ["byte", "append"])
def test_changed_shipped_demo_weights_are_refused(tmp_path, change):
    from xreal_bench.demo.evaluators import CLASSIFIER, SEGMENTER, DemoClassifier, DemoSegmenter

    shipped = WeightsManager()
    for art, evaluator in ((SEGMENTER, DemoSegmenter), (CLASSIFIER, DemoClassifier)):
        copy = tmp_path / f"{art.name}.safetensors"
        data = bytearray(shipped.path(art).read_bytes())
        manager = WeightsManager(tmp_path, {art.name: replace(art, package=None, path=copy.name)})
        copy.write_bytes(bytes(data))
        intact = evaluator(weights=manager, device=torch.device("cpu"))
        assert (intact.weights_hash, intact.weights_status) == (art.sha256, "verified")
        if change == "byte":
            data[-100] ^= 1  # one weight's bits: still a readable safetensors file
        else:
            data += b"\0"
        copy.write_bytes(bytes(data))
        with pytest.raises(WeightsLoadError) as info:
            evaluator(weights=manager, device=torch.device("cpu"))
        message = str(info.value)
        assert f"refusing to load {copy}" in message and "python -m xreal_bench.demo.train_evaluators" in message
        assert ("!= published" if change == "byte" else f"size {len(data)} != published {art.size}") in message
