"""torchxrayvision evaluators: DenseNet-121 classifier and features, PSPNet anatomy segmenter.

Weights come from the weights manager (``xrv-densenet-<tag>``, ``xrv-pspnet``) and are read by
:mod:`xreal_bench.safe_load` only: torchxrayvision's constructors would ``torch.load`` the file
themselves (the DenseNet with ``weights_only=False``, running any code a crafted file holds),
so they never see a path. The DenseNet release files are whole pickled modules; their
parameters and buffers are extracted by path (:func:`~xreal_bench.safe_load.module_state_dict`)
into ``DenseNet(weights=None)``, which then gets what ``weights=<key>`` would have set
(``targets``, ``op_threshs``, ``input_resolution``, eval mode) from torchxrayvision's
``model_urls``. PSPNet's constructor always loads (or downloads) its file, so the segmenter
is built around the same ``pspnet`` network with the same input transform (see
:func:`build_pspnet`). Both load state dicts strictly, so a file of the wrong model fails
loudly (:class:`WeightsLoadError`) instead of leaving layers random.

Preprocessing (applied here; the engine passes [0, 1] images):
``x -> (2x - 1) * 1024`` (= ``xrv.datasets.normalize(x * 255, 255)``), centre crop to a square
(``XRayCenterCrop`` offsets), bilinear antialiased resize to the model's resolution
(224 for DenseNet, 512 for PSPNet — the resize torchxrayvision itself applies), 1 channel.

Lung sides (UNCERTAIN, see :class:`XRVPSPNet`): ChestX-Det's "Left Lung" is taken to be the
patient's left lung (radiological naming, on the image's right on a frontal view). Neither
torchxrayvision's code nor the ChestX-Det release states it; ``pspnet_left_lung`` switches
the mapping, and :func:`xreal_bench.metrics.dice.left_lung_on_image_right` checks it on real images.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.metrics.evaluators.base import (
    Classifier,
    EvidenceTarget,
    FeatureExtractor,
    Segmenter,
    WeightsLoadError,
)
from xreal_bench.registry import XRV_TAGS
from xreal_bench.safe_load import module_state_dict, read_checkpoint, state_dict_of
from xreal_bench.weights import Artifact, WeightsManager, WeightsTrust

#: torchxrayvision output names that differ from the CheXpert names.
XRV_TO_CHEXPERT: dict[str, str] = {"Effusion": "Pleural Effusion"}
DENSENET_RESOLUTION = 224
PSPNET_RESOLUTION = 512
RELEASE = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
LICENSE = "Apache-2.0 (torchxrayvision)"
#: The release file of each DenseNet weight set (torchxrayvision's ``model_urls``).
DENSENET_FILES = {
    "mimic_ch": "mimic_ch-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "mimic_nb": "mimic_nb-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "chex": "chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "all": "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
}
DENSENETS = {
    tag: Artifact(
        name=f"xrv-densenet-{tag}",
        path=f"torchxrayvision/{DENSENET_FILES[tag]}",
        source=RELEASE + DENSENET_FILES[tag],
        url=RELEASE + DENSENET_FILES[tag],
        license=LICENSE,
        description=f"torchxrayvision DenseNet-121 densenet121-res224-{tag} (classifier, fid_xrv features)",
    )
    for tag in XRV_TAGS
}
PSPNET = Artifact(
    name="xrv-pspnet",
    path="torchxrayvision/pspnet_chestxray_best_model_4.pth",
    source=RELEASE + "pspnet_chestxray_best_model_4.pth",
    url=RELEASE + "pspnet_chestxray_best_model_4.pth",
    license=LICENSE,
    description="torchxrayvision PSPNet chest anatomy segmenter (anatomy maps, Dice)",
)
XRV_PREPROCESSING = "[0,1] -> (2x-1)*1024, centre crop to square, bilinear antialiased resize to {size}, 1 channel"


def import_xrv():
    """Import torchxrayvision without keeping its process-wide ``warnings.filterwarnings("ignore")``."""
    with warnings.catch_warnings():
        import torchxrayvision

    return torchxrayvision


def centre_crop_box(h: int, w: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centred square crop, with ``XRayCenterCrop``'s offsets."""
    side = min(h, w)
    return h // 2 - side // 2, w // 2 - side // 2, side


def xrv_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """[0, 1] ``[B, 1, H, W]`` -> ``[B, 1, size, size]`` in [-1024, 1024] (see module docstring)."""
    top, left, side = centre_crop_box(*images.shape[-2:])
    x = (images[..., top : top + side, left : left + side] * 2.0 - 1.0) * 1024.0
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def densenet_from_state(key: str, state: dict[str, torch.Tensor], path: Path):
    """``DenseNet(weights=None)`` with ``state`` loaded strictly, then given what ``weights=key`` sets."""
    xrv = import_xrv()
    spec = xrv.models.model_urls[key]
    model = xrv.models.DenseNet(num_classes=len(spec["labels"]), in_channels=1)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsLoadError(f"{path} is not a torchxrayvision {key} model ({exc})") from None
    model.weights = key
    model.targets = model.pathologies = list(spec["labels"])
    if "op_threshs" in spec:
        model.op_threshs = torch.tensor(spec["op_threshs"])
    if "input_resolution" in spec:
        model.input_resolution = spec["input_resolution"]
    return model.eval()


def load_densenet(tag: str, weights: WeightsManager):
    """A torchxrayvision DenseNet with the ``xrv-densenet-<tag>`` weights (eval mode, CPU) and their trust."""
    artifact = DENSENETS[tag]
    path = weights.require(artifact)
    trust = weights.trust(artifact)
    key = f"densenet121-res224-{tag}"
    hint = f"replace it (xreal-bench weights fetch {artifact.name})"
    try:
        model = densenet_from_state(key, module_state_dict(read_checkpoint(path), path), path)
    except WeightsLoadError as exc:
        raise WeightsLoadError(f"{exc}; {hint}") from None
    return model, trust


class XRVDenseNetClassifier(Classifier):
    """CheXpert-label probabilities (raw sigmoid) of a torchxrayvision DenseNet-121.

    Outputs are mapped to CheXpert names (``Effusion`` -> ``Pleural Effusion``), empty slots
    and non-CheXpert outputs dropped, columns in CheXpert order. ``calibrated_thresholds`` are
    the model's ``op_threshs`` in the same raw-probability space.
    """

    artifacts = tuple(DENSENETS.values())

    preprocessing = XRV_PREPROCESSING.format(size=DENSENET_RESOLUTION) + "; sigmoid outputs, op_norm off"

    def __init__(self, *, weights: WeightsManager, device: torch.device, tag: str = "mimic_ch"):
        model, trust = load_densenet(tag, weights)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        mapped = {XRV_TO_CHEXPERT.get(t, t): i for i, t in enumerate(model.targets) if t}
        self.labels = tuple(name for name in CHEXPERT_LABELS if name in mapped)
        self.columns = [mapped[name] for name in self.labels]
        op = model.op_threshs
        self.calibrated_thresholds = (
            {name: float(op[i]) for name, i in zip(self.labels, self.columns) if not torch.isnan(op[i])}
            if op is not None
            else None
        )
        model.op_threshs = None  # raw probabilities; the thresholds above live in the same space
        model.apply_sigmoid = True
        self.name = f"xrv-densenet-{tag}"
        self.device = device
        self.model = model.to(device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(xrv_input(images, DENSENET_RESOLUTION))[:, self.columns].float()

    evidence_layer = "features: the last dense block after norm5 and the ReLU of features2 (7x7 at 224 px), before pooling"

    def evidence_target(self, images: torch.Tensor) -> EvidenceTarget:
        """``features2`` and the classifier head written out, so the feature map stays in the graph."""
        activations = F.relu(self.model.features(xrv_input(images, DENSENET_RESOLUTION)))
        logits = self.model.classifier(F.adaptive_avg_pool2d(activations, 1).flatten(1))[:, self.columns]
        top, left, side = centre_crop_box(*images.shape[-2:])
        return EvidenceTarget(activations, logits, region=(top, left, side, side))


class XRVDenseNetFeatures(FeatureExtractor):
    """1024-d pooled DenseNet-121 features (``features2``) for the X-ray FID ``fid_xrv``."""

    artifacts = tuple(DENSENETS.values())

    preprocessing = XRV_PREPROCESSING.format(size=DENSENET_RESOLUTION) + "; features2 (ReLU + global average pool)"

    def __init__(self, *, weights: WeightsManager, device: torch.device, tag: str = "mimic_ch"):
        model, trust = load_densenet(tag, weights)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        self.name = f"xrv-densenet-features-{tag}"
        self.dim = 1024
        self.device = device
        self.model = model.to(device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.features2(xrv_input(images, DENSENET_RESOLUTION)).float()


def pspnet_outputs(pspnet_left_lung: str) -> tuple[str, str, str, str]:
    """PSPNet target names feeding our channels (left lung, right lung, heart, aorta)."""
    if pspnet_left_lung == "patient-left":
        return ("Left Lung", "Right Lung", "Heart", "Aorta")
    if pspnet_left_lung == "image-left":
        return ("Right Lung", "Left Lung", "Heart", "Aorta")
    raise ValueError(f"pspnet_left_lung must be 'patient-left' or 'image-left', got {pspnet_left_lung!r}")


def pspnet_state(path: Path) -> dict[str, torch.Tensor]:
    """The release's DataParallel state dict with its ``module.`` prefix removed."""
    state = state_dict_of(read_checkpoint(path), path)
    prefix = "module."
    return {k.removeprefix(prefix): v for k, v in state.items()} if all(k.startswith(prefix) for k in state) else state


def build_pspnet(state: dict[str, torch.Tensor], path: Path):
    """torchxrayvision's ChestX-Det ``PSPNet`` around a ``pspnet`` network holding ``state`` (strict).

    ``PSPNet.__init__`` always ``torch.load``-s (or downloads) its weights file, so it is not
    called: the instance gets exactly the attributes it would set (the ImageNet ``transform``,
    the eval-mode ``model``) and keeps torchxrayvision's ``forward`` (channel repeat, resize
    check, ``[-1024, 1024] -> [0, 1]``, normalisation).
    """
    import torchvision

    chestx_det = import_xrv().baseline_models.chestx_det
    network = chestx_det.pspnet(len(chestx_det.PSPNet.targets))
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsLoadError(f"{path} is not the ChestX-Det PSPNet state dict ({exc})") from None
    model = chestx_det.PSPNet.__new__(chestx_det.PSPNet)
    torch.nn.Module.__init__(model)
    model.transform = torchvision.transforms.Compose(
        [torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    model.model = network.eval()
    return model.eval()


def load_pspnet(weights: WeightsManager) -> tuple[torch.nn.Module, WeightsTrust]:
    path = weights.require(PSPNET)
    trust = weights.trust(PSPNET)
    try:
        return build_pspnet(pspnet_state(path), path), trust
    except WeightsLoadError as exc:
        raise WeightsLoadError(f"{exc}; replace it (xreal-bench weights fetch {PSPNET.name})") from None


class XRVPSPNet(Segmenter):
    """ChestX-Det PSPNet (torchxrayvision) -> lungs / heart / aorta masks at the input size.

    Masks are ``sigmoid(logit) > 0.5`` per class (multi-label, not argmax), computed at 512 px
    on the centred square crop, resized back by nearest neighbour (pixel centres, like
    :func:`xreal_bench.imaging.resize_label_map`); outside the crop of a non-square input the
    masks are False.

    ``pspnet_left_lung`` says which lung PSPNet's "Left Lung" output is: ``"patient-left"``
    (default: the radiological convention, the lung on the image's right of a frontal view)
    or ``"image-left"`` (the lung on the image's left, i.e. the patient's right). This was not
    verifiable from the released code; check it on real images with
    :func:`xreal_bench.metrics.dice.left_lung_on_image_right`.
    """

    artifacts = (PSPNET,)

    preprocessing = XRV_PREPROCESSING.format(size=PSPNET_RESOLUTION) + "; sigmoid > 0.5; nearest resize back"

    def __init__(
        self,
        *,
        weights: WeightsManager,
        device: torch.device,
        pspnet_left_lung: Literal["patient-left", "image-left"] = "patient-left",
    ):
        outputs = pspnet_outputs(pspnet_left_lung)
        model, trust = load_pspnet(weights)
        self.output_indices = [model.targets.index(target) for target in outputs]
        self.pspnet_left_lung = pspnet_left_lung
        self.preprocessing = f"{type(self).preprocessing}; PSPNet 'Left Lung' taken as {pspnet_left_lung}"
        self.name = "xrv-pspnet"
        self.device = device
        self.model = model.to(device)
        self.weights_hash, self.weights_status = trust.sha256, trust.status

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        top, left, side = centre_crop_box(h, w)
        with warnings.catch_warnings():  # ptsemseg calls the deprecated F.upsample on every forward
            warnings.filterwarnings("ignore", message=".*nn.functional.upsample.* is deprecated")
            logits = self.model(xrv_input(images, PSPNET_RESOLUTION))[:, self.output_indices]
        masks = (torch.sigmoid(logits) > 0.5).float()
        if side != PSPNET_RESOLUTION:
            masks = F.interpolate(masks, size=(side, side), mode="nearest-exact")
        out = torch.zeros((b, len(self.channels), h, w), dtype=torch.bool, device=images.device)
        out[..., top : top + side, left : left + side] = masks > 0.5
        return out
