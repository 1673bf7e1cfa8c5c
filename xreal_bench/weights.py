"""Weights manager: one manifest of every external artifact the suite can load.

Every loader asks :meth:`WeightsManager.require` for its file. A missing file raises one
:class:`MissingWeightsError` naming the artifact, the exact path looked at, and how to obtain
it; nothing ever falls back to random weights. The weights folder is, in order:
``[weights].dir`` in the config, ``$XREAL_BENCH_WEIGHTS``, ``~/.cache/xreal-bench/weights``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from xreal_bench.atomic import write_atomic
from xreal_bench.errors import UserFacingError

ENV_VAR = "XREAL_BENCH_WEIGHTS"
DEFAULT_DIR = Path("~/.cache/xreal-bench/weights")

DEMO_SOURCE = "shipped with xreal-bench; rebuild: python -m xreal_bench.demo.train_evaluators --out xreal_bench/demo/weights"
XREAL_SOURCE = "https://github.com/BioMedIA-MBZUAI/XReal (README: 'saved_models' archive)"
CHEFF_SOURCE = "https://github.com/saiboxx/chexray-diffusion (README download links; reported dead in 2026)"
XRV_RELEASE = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"


@dataclass(frozen=True)
class Artifact:
    """One external file or folder. ``path`` is relative to the weights folder."""

    name: str
    path: str
    source: str
    license: str
    description: str
    kind: str = "file"  # "file" or "dir" (a snapshot folder; ``files`` must all exist in it)
    files: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    url: str | None = None  # direct download for `weights fetch`
    hub_id: str | None = None  # Hugging Face repo id for `weights fetch`
    package: str | None = None  # set for files shipped inside a Python package: ``path`` is relative to it


def xrv_densenet(tag: str, file: str) -> Artifact:
    return Artifact(
        name=f"xrv-densenet-{tag}",
        path=f"torchxrayvision/{file}",
        source=XRV_RELEASE + file,
        url=XRV_RELEASE + file,
        license="Apache-2.0 (torchxrayvision)",
        description=f"torchxrayvision DenseNet-121 densenet121-res224-{tag} (classifier, fid_xrv features)",
    )


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in [
        Artifact(
            name="xrv-pspnet",
            path="torchxrayvision/pspnet_chestxray_best_model_4.pth",
            source=XRV_RELEASE + "pspnet_chestxray_best_model_4.pth",
            url=XRV_RELEASE + "pspnet_chestxray_best_model_4.pth",
            license="Apache-2.0 (torchxrayvision)",
            description="torchxrayvision PSPNet chest anatomy segmenter (anatomy maps, Dice)",
        ),
        xrv_densenet("mimic_ch", "mimic_ch-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"),
        xrv_densenet("mimic_nb", "mimic_nb-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"),
        xrv_densenet("chex", "chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"),
        xrv_densenet(
            "all", "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
        ),
        Artifact(
            name="inception-fid",
            path="inception/weights-inception-2015-12-05-6726825d.pth",
            source="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
            url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
            license="Apache-2.0 (torch-fidelity port of the TF Inception graph)",
            description="Inception-v3 FID feature extractor, torch-fidelity weights (metric `fid`)",
        ),
        Artifact(
            name="rad-dino",
            path="rad-dino",
            kind="dir",
            files=("config.json", "model.safetensors", "preprocessor_config.json"),
            source="https://huggingface.co/microsoft/rad-dino",
            hub_id="microsoft/rad-dino",
            license="MSRLA (research use)",
            description="RAD-DINO ViT-B/14 chest X-ray encoder (optional FID feature space)",
        ),
        Artifact(
            name="demo-segmenter",
            path="weights/demo-segmenter.safetensors",
            package="xreal_bench.demo",
            source=DEMO_SOURCE,
            license="MIT (xreal-bench)",
            description="demo U-Net trained on the synthetic phantoms (demo Dice, demo fid_xrv features)",
            sha256="3f789f057a18147c547ccf49484736426076515459d433ece687db88833a990d",
            size=930012,
        ),
        Artifact(
            name="demo-classifier",
            path="weights/demo-classifier.safetensors",
            package="xreal_bench.demo",
            source=DEMO_SOURCE,
            license="MIT (xreal-bench)",
            description="demo finding classifier trained on the synthetic phantoms (demo F1/AUC, demo fid/kid features)",
            sha256="3f960d457ded55edf9e282e54a152da262069a868356c50367a15754f23fc348",
            size=603680,
        ),
        Artifact(
            name="xreal-backbone",
            path="xreal/saved_models/backbone.pth",
            source=XREAL_SOURCE,
            license="CC BY-NC 4.0 (non-commercial)",
            description="XReal latent diffusion backbone (UNet + BERT-style text encoder)",
        ),
        Artifact(
            name="xreal-ldm-ae",
            path="xreal/saved_models/ldm_ae.pth",
            source=XREAL_SOURCE,
            license="CC BY-NC 4.0 (non-commercial)",
            description="XReal latent autoencoder (KL-f4, 3 latent channels)",
        ),
        Artifact(
            name="xreal-anatomy-controller",
            path="xreal/saved_models/anatomy_controller.pth",
            source=XREAL_SOURCE,
            license="CC BY-NC 4.0 (non-commercial)",
            description="XReal anatomy controller (autoencoder: label map -> anatomy image)",
        ),
        Artifact(
            name="xreal-controlnet",
            path="xreal/controlnet.ckpt",
            source="not public: train with the XReal/ControlNet code, then place the checkpoint here",
            license="depends on your checkpoint",
            description="ControlNet on XReal's backbone (lllyasviel/CompVis key layout)",
        ),
        Artifact(
            name="cheff-autoencoder",
            path="cheff/cheff_autoencoder.pt",
            source=CHEFF_SOURCE,
            license="MIT (chexray-diffusion)",
            description="Cheff latent autoencoder",
        ),
        Artifact(
            name="cheff-diff-t2i",
            path="cheff/cheff_diff_t2i.pt",
            source=CHEFF_SOURCE,
            license="MIT (chexray-diffusion)",
            description="Cheff text-to-image latent diffusion model",
        ),
        Artifact(
            name="cheff-sr-fine",
            path="cheff/cheff_sr_fine.pt",
            source=CHEFF_SOURCE,
            license="MIT (chexray-diffusion)",
            description="Cheff super-resolution model 256 -> 1024 (optional)",
        ),
        Artifact(
            name="roentgen-v1",
            path="roentgen/roent-gen-v1-0",
            kind="dir",
            files=("model_index.json",),
            source="https://huggingface.co/StanfordAIMI/roent-gen-v1-0 (gated: PhysioNet credentialing)",
            hub_id="StanfordAIMI/roent-gen-v1-0",
            license="gated; MIMIC-CXR data use agreement",
            description="RoentGen v1 Stable Diffusion pipeline snapshot (diffusers layout)",
        ),
        Artifact(
            name="roentgen-v2",
            path="roentgen/RoentGen-v2",
            kind="dir",
            files=("model_index.json",),
            source="https://huggingface.co/stanfordmimi/RoentGen-v2 (gated)",
            hub_id="stanfordmimi/RoentGen-v2",
            license="gated; MIMIC-CXR data use agreement",
            description="RoentGen v2 Stable Diffusion pipeline snapshot (diffusers layout)",
        ),
        Artifact(
            name="bert-tokenizer",
            path="tokenizers/bert-base-uncased",
            kind="dir",
            files=("vocab.txt",),
            source="https://huggingface.co/google-bert/bert-base-uncased (vocab.txt, tokenizer_config.json)",
            hub_id="google-bert/bert-base-uncased",
            license="Apache-2.0",
            description="BERT tokenizer vocabulary used by XReal/Cheff's text encoder",
        ),
    ]
}


class MissingWeightsError(UserFacingError):
    """A required artifact is not where the weights manager expects it."""


def weights_dir(configured: str = "") -> Path:
    """The weights folder: config value, else ``$XREAL_BENCH_WEIGHTS``, else the user cache."""
    chosen = configured or os.environ.get(ENV_VAR) or str(DEFAULT_DIR)
    return Path(chosen).expanduser()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtifactStatus:
    name: str
    path: Path
    present: bool
    detail: str


class WeightsManager:
    """Locates, checks and (with internet) fetches the artifacts in :data:`ARTIFACTS`."""

    def __init__(self, root: str | Path | None = None, artifacts: dict[str, Artifact] | None = None):
        self.root = Path(root).expanduser() if root else weights_dir()
        self.artifacts = artifacts if artifacts is not None else ARTIFACTS

    def artifact(self, name: str) -> Artifact:
        try:
            return self.artifacts[name]
        except KeyError:
            raise KeyError(f"unknown artifact {name!r}; known: {', '.join(sorted(self.artifacts))}") from None

    def path(self, name: str) -> Path:
        """Where the artifact is expected (whether or not it exists)."""
        art = self.artifact(name)
        if art.package:
            return Path(importlib.resources.files(art.package)) / art.path  # type: ignore[arg-type]
        return self.root / art.path

    def missing_files(self, name: str) -> list[Path]:
        art, path = self.artifact(name), self.path(name)
        if art.kind == "dir":
            return [path / f for f in art.files if not (path / f).is_file()] if path.is_dir() else [path]
        return [] if path.is_file() and path.stat().st_size > 0 else [path]

    def require(self, name: str) -> Path:
        """The artifact's path, or :class:`MissingWeightsError` saying where and how to get it."""
        missing = self.missing_files(name)
        if missing:
            raise MissingWeightsError(self.missing_message(name, missing))
        return self.path(name)

    def missing_message(self, name: str, missing: list[Path]) -> str:
        art = self.artifact(name)
        what = "folder" if art.kind == "dir" and missing == [self.path(name)] else "file"
        lines = [
            f"missing weights {name!r} ({art.description}):",
            *(f"  {what} not found: {p}" for p in missing),
            f"  weights folder: {self.root} (set [weights].dir in the config or ${ENV_VAR} to change it)",
            f"  source: {art.source}",
            f"  licence: {art.license}",
        ]
        if art.url or art.hub_id:
            lines.append(f"  get it: xreal-bench weights fetch {name}   (on a machine with internet access)")
        lines.append(f"  or place it by hand at: {self.path(name)}   (xreal-bench weights path {name})")
        return "\n".join(lines)

    def status(self, name: str) -> ArtifactStatus:
        missing = self.missing_files(name)
        detail = "present" if not missing else f"missing ({len(missing)} file(s))"
        return ArtifactStatus(name, self.path(name), not missing, detail)

    def file_hash(self, name: str) -> str:
        """sha256 of a present file artifact (cached next to it by size and mtime); for folders,
        a hash over the required files' hashes."""
        path, art = self.require(name), self.artifact(name)
        if art.package:
            return sha256_file(path)  # shipped files are small; never write sidecars into the package
        if art.kind == "file":
            return cached_sha256(path)
        joined = "".join(cached_sha256(path / f) for f in art.files)
        return hashlib.sha256(joined.encode()).hexdigest()

    def verify(self, name: str) -> ArtifactStatus:
        """Check presence, size and sha256 offline against the manifest (where known)."""
        art = self.artifact(name)
        status = self.status(name)
        if not status.present:
            return status
        if art.kind == "file":
            path = self.path(name)
            if art.size is not None and path.stat().st_size != art.size:
                return ArtifactStatus(name, path, False, f"size {path.stat().st_size} != expected {art.size}")
            digest = self.file_hash(name)
            if art.sha256 is not None and digest != art.sha256:
                return ArtifactStatus(name, path, False, f"sha256 {digest} != expected {art.sha256}")
            known = "matches manifest" if art.sha256 else "no reference hash in the manifest"
            return ArtifactStatus(name, path, True, f"sha256 {digest} ({known})")
        return ArtifactStatus(name, status.path, True, f"all {len(art.files)} required file(s) present")

    def fetch(self, name: str) -> Path:
        """Download the artifact into place (needs internet; atomic)."""
        art = self.artifact(name)
        target = self.path(name)
        if art.url:
            try:
                with urllib.request.urlopen(art.url, timeout=30) as response:
                    write_atomic(target, lambda out: shutil.copyfileobj(response, out))
            except OSError as exc:
                raise ConnectionError(
                    f"could not download {name!r} from {art.url}: {exc}\n"
                    f"  download it on a machine with internet access and place it at {target}"
                ) from None
            return target
        if art.hub_id:
            try:
                from huggingface_hub import snapshot_download

                snapshot_download(art.hub_id, local_dir=target)
            except Exception as exc:  # noqa: BLE001 - any hub failure gets the same advice
                raise ConnectionError(
                    f"could not download {name!r} from the Hugging Face hub ({art.hub_id}): {exc}\n"
                    f"  access may be gated; log in with `huggingface-cli login`, or copy the snapshot folder to {target}"
                ) from None
            return target
        raise ConnectionError(f"{name!r} has no public download: {art.source}\n  place it at {target}")


def cached_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered in ``<path>.sha256.json`` keyed by size and mtime."""
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar = path.with_name(path.name + ".sha256.json")
    try:
        data = json.loads(sidecar.read_text())
        if data.get("key") == key:
            return data["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    try:
        write_atomic(sidecar, lambda f: f.write(json.dumps({"key": key, "sha256": digest}).encode()))
    except OSError:
        pass  # read-only weights folder: hash again next time
    return digest
