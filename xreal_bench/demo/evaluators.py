"""Demo evaluators: small networks the project trained on its own synthetic phantoms.

The real evaluators (Inception, torchxrayvision) need weights that an offline machine cannot
download, so the demo ships its own (``xreal_bench/demo/weights/*.safetensors``, made
by ``python -m xreal_bench.demo.train_evaluators``, which prints their held-out Dice and AUC):

- ``demo-segmenter``: a small U-Net -> lungs (patient's left = image right), heart, aorta.
- ``demo-segmenter-features``: the U-Net's globally pooled bottleneck (64-d; metric ``fid_xrv``
  in the demo suite: a "domain" feature space trained on anatomy).
- ``demo-classifier``: a small CNN -> probabilities of the eight findings the phantoms draw,
  with Youden-J operating points fitted on the training script's validation phantoms.
- ``demo-classifier-features``: that CNN's penultimate layer (64-d; metrics ``fid``/``kid``).
- ``demo-classifier-block2``: the same CNN after its second stride-2 stage (32 px), averaged
  over space (32-d; the demo's ``raddino`` role, metric ``fd_raddino``).
- ``demo-segmenter-encoder``: each of the U-Net's four encoder levels averaged over space and
  concatenated (16 + 32 + 48 + 64 = 160-d; the demo's ``clip`` role, metric ``cmmd``). The
  bottleneck alone is ``demo-segmenter-features`` already.
- ``demo-pixels``: no network: the image average-pooled to 8 x 8 (64-d; the demo's ``dinov2``
  role, metric ``fd_dinov2`` and the default embedding of PRDC / Vendi / memorization).

Numbers from these networks only mean something on the synthetic demo data; every output
labels them ``demo:<name>``. They are NOT Inception-FID or torchxrayvision scores.

Preprocessing of the networks (each evaluator does its own; inputs are the run's [0, 1] images):
bilinear antialiased resize of the whole image to 128 x 128 (no crop), then ``2x - 1``.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from xreal_bench.labels import ANATOMY_CLASSES, CHEXPERT_LABELS
from xreal_bench.metrics.evaluators.base import (
    Classifier,
    EvidenceTarget,
    FeatureExtractor,
    Segmenter,
    WeightsLoadError,
)
from xreal_bench.weights import WEIGHT_FREE, Artifact, WeightsManager, WeightsMismatchError, WeightsTrust

INPUT_SIZE = 128
SEGMENTER_ARTIFACT = "demo-segmenter"
CLASSIFIER_ARTIFACT = "demo-classifier"
#: Segmenter output classes: the anatomy label-map values 0..4 (background, left lung, right lung, heart, aorta).
SEGMENTER_CLASSES = 5
SEGMENTER_WIDTHS = (16, 32, 48, 64)
CLASSIFIER_WIDTHS = (16, 32, 64, 64)
#: ``demo-classifier-block2`` reads the classifier after this many stride-2 stages.
CLASSIFIER_FEATURE_STAGE = 2
#: ``demo-pixels``: the image average-pooled to this many cells per side.
PIXEL_GRID = 8
REBUILD = "python -m xreal_bench.demo.train_evaluators --out xreal_bench/demo/weights"
SOURCE = f"shipped with xreal-bench; rebuild: {REBUILD}"
SEGMENTER = Artifact(
    name=SEGMENTER_ARTIFACT,
    path="weights/demo-segmenter.safetensors",
    package="xreal_bench.demo",
    source=SOURCE,
    license="MIT (xreal-bench)",
    description="demo U-Net trained on the synthetic phantoms (demo Dice, demo fid_xrv features)",
    sha256="3f789f057a18147c547ccf49484736426076515459d433ece687db88833a990d",
    size=930012,
)
CLASSIFIER = Artifact(
    name=CLASSIFIER_ARTIFACT,
    path="weights/demo-classifier.safetensors",
    package="xreal_bench.demo",
    source=SOURCE,
    license="MIT (xreal-bench)",
    description="demo finding classifier trained on the synthetic phantoms (demo F1/AUC, demo fid/kid features)",
    sha256="3f960d457ded55edf9e282e54a152da262069a868356c50367a15754f23fc348",
    size=603680,
)
PREPROCESSING = f"[0,1] -> bilinear antialiased resize to {INPUT_SIZE}x{INPUT_SIZE} (whole image, no crop), 2x-1, 1 channel"


def demo_input(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] ``[B, 1, H, W]`` -> the networks' ``[B, 1, 128, 128]`` input in [-1, 1]."""
    if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return images * 2.0 - 1.0


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DemoUNet(nn.Module):
    """U-Net on a 128 px input: a stride-2 stem, then levels at 64/32/16/8 px (``widths``);
    class logits at 64 px; the 8 px bottleneck, averaged over space, is the feature vector."""

    architecture = "DemoUNet-v1"

    def __init__(self, widths: tuple[int, ...] = SEGMENTER_WIDTHS, classes: int = SEGMENTER_CLASSES):
        super().__init__()
        self.stem = conv_bn_relu(1, widths[0], stride=2)
        self.encoder = nn.ModuleList(
            nn.Sequential(conv_bn_relu(widths[max(i - 1, 0)], w), conv_bn_relu(w, w)) for i, w in enumerate(widths)
        )
        self.decoder = nn.ModuleList(
            nn.Sequential(conv_bn_relu(widths[i + 1] + widths[i], widths[i]), conv_bn_relu(widths[i], widths[i]))
            for i in range(len(widths) - 1)
        )
        self.head = nn.Conv2d(widths[0], classes, 1)
        self.feature_dim = widths[-1]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder activations, finest first; the last is the bottleneck."""
        skips = []
        x = self.stem(x)
        for i, level in enumerate(self.encoder):
            x = level(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes, H/2, W/2]``."""
        skips = self.encode(x)
        y = skips[-1]
        for i in reversed(range(len(self.decoder))):
            y = F.interpolate(y, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            y = self.decoder[i](torch.cat([y, skips[i]], dim=1))
        return self.head(y)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[-1].mean(dim=(2, 3))


class DemoClassifierNet(nn.Module):
    """A plain CNN: stem, four stride-2 stages (``widths``), global average pool (the
    ``widths[-1]``-d penultimate features), one linear layer to the label logits."""

    architecture = "DemoClassifierNet-v1"

    def __init__(self, labels: int, widths: tuple[int, ...] = CLASSIFIER_WIDTHS):
        super().__init__()
        layers, c = [conv_bn_relu(1, widths[0])], widths[0]
        for w in widths:
            layers += [conv_bn_relu(c, w, stride=2), conv_bn_relu(w, w)]
            c = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, labels)
        self.feature_dim = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def stage_features(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """The stem and the first ``stage`` stages (two layers each), averaged over space: ``widths[stage - 1]``-d."""
        return self.body[: 1 + 2 * stage](x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def shipped_trust(weights: WeightsManager, artifact: Artifact) -> WeightsTrust:
    """The shipped file's sha256, checked against the size and sha256 it was shipped with.

    The files are small, so they are hashed on every load; a changed file is refused, naming
    the file and how to restore or rebuild it.
    """
    try:
        return weights.trust(artifact)
    except WeightsMismatchError as exc:
        raise WeightsLoadError(f"{exc}\n  {restore_hint(artifact.name)}") from None


def read_safetensors(weights: WeightsManager, artifact: Artifact) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of the artifact's file (missing -> ``MissingWeightsError``; changed -> ``WeightsLoadError``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = weights.require(artifact)
    shipped_trust(weights, artifact)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsLoadError(f"{path} is not a readable safetensors file ({exc}); {restore_hint(artifact.name)}") from None


def restore_hint(artifact: str) -> str:
    return f"restore the {artifact!r} file shipped with xreal-bench (reinstall it) or rebuild it with: {REBUILD}"


def load_state(
    model: nn.Module, state: dict[str, torch.Tensor], meta: dict[str, str], path, artifact: str, device: torch.device
) -> nn.Module:
    """Load ``state`` into ``model`` strictly; a file of another model -> :class:`WeightsLoadError`."""
    found = meta.get("architecture", "<none>")
    if found != model.architecture:
        raise WeightsLoadError(f"{path} holds architecture {found!r}, expected {model.architecture!r}; {restore_hint(artifact)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsLoadError(f"{path} does not fit {model.architecture} ({exc}); {restore_hint(artifact)}") from None
    return model.eval().to(device)


def load_segmenter_net(weights: WeightsManager, device: torch.device) -> DemoUNet:
    state, meta = read_safetensors(weights, SEGMENTER)
    return load_state(DemoUNet(), state, meta, weights.path(SEGMENTER), SEGMENTER_ARTIFACT, device)


def load_classifier_net(
    weights: WeightsManager, device: torch.device
) -> tuple[DemoClassifierNet, tuple[str, ...], dict[str, float]]:
    """The classifier network, its label names and its calibrated (Youden-J) thresholds."""
    state, meta = read_safetensors(weights, CLASSIFIER)
    path = weights.path(CLASSIFIER)
    try:
        labels = tuple(json.loads(meta["labels"]))
        thresholds = {str(k): float(v) for k, v in json.loads(meta["thresholds"]).items()}
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise WeightsLoadError(
            f"{path}: metadata lacks valid 'labels'/'thresholds' ({exc!r}); {restore_hint(CLASSIFIER_ARTIFACT)}"
        ) from None
    unknown = [n for n in labels if n not in CHEXPERT_LABELS]
    if unknown or not labels or set(thresholds) - set(labels):
        raise WeightsLoadError(
            f"{path}: labels {list(labels)} / thresholds {sorted(thresholds)} are not CheXpert label names; {restore_hint(CLASSIFIER_ARTIFACT)}"
        )
    model = load_state(DemoClassifierNet(len(labels)), state, meta, path, CLASSIFIER_ARTIFACT, device)
    return model, labels, thresholds


class DemoSegmenter(Segmenter):
    """Lungs / heart / aorta masks from the demo U-Net (one class per pixel: the label maps' classes)."""

    artifacts = (SEGMENTER,)

    preprocessing = (
        f"{PREPROCESSING}; logits at 64 px bilinearly upsampled to the input size; argmax over background, lungs, heart, aorta"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device):
        self.model = load_segmenter_net(weights, device)
        trust = shipped_trust(weights, SEGMENTER)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        self.name = "demo-segmenter"
        self.device = device
        self.values = [ANATOMY_CLASSES[c] for c in self.channels]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = F.interpolate(self.model(demo_input(images)), size=images.shape[-2:], mode="bilinear", align_corners=False)
        labels = logits.max(dim=1).indices  # = argmax, several times faster on CPU for [B, 5, H, W]
        return torch.stack([labels == v for v in self.values], dim=1)


class DemoSegmenterFeatures(FeatureExtractor):
    """64-d globally pooled bottleneck of the demo U-Net (the demo's ``fid_xrv`` space)."""

    artifacts = (SEGMENTER,)

    preprocessing = f"{PREPROCESSING}; U-Net bottleneck (8 px, ReLU) averaged over space"

    def __init__(self, *, weights: WeightsManager, device: torch.device):
        self.model = load_segmenter_net(weights, device)
        trust = shipped_trust(weights, SEGMENTER)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        self.name = "demo-segmenter-features"
        self.dim = self.model.feature_dim
        self.device = device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.features(demo_input(images)).float()


class DemoClassifier(Classifier):
    """Sigmoid probabilities of the drawn findings (CheXpert names, ``labels``);
    ``calibrated_thresholds``: Youden-J per class on the training script's validation phantoms."""

    artifacts = (CLASSIFIER,)

    preprocessing = f"{PREPROCESSING}; sigmoid of the logits"

    def __init__(self, *, weights: WeightsManager, device: torch.device):
        self.model, self.labels, self.calibrated_thresholds = load_classifier_net(weights, device)
        trust = shipped_trust(weights, CLASSIFIER)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        self.name = "demo-classifier"
        self.device = device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(demo_input(images))).float()

    evidence_layer = "body: the last convolutional stage after its ReLU (8x8 at the 128 px input), before global pooling"

    def evidence_target(self, images: torch.Tensor) -> EvidenceTarget:
        activations = self.model.body(demo_input(images))
        return EvidenceTarget(activations, self.model.head(activations.mean(dim=(2, 3))))


class DemoClassifierFeatures(FeatureExtractor):
    """64-d penultimate layer (pooled, ReLU) of the demo classifier (the demo's ``fid``/``kid`` space)."""

    artifacts = (CLASSIFIER,)

    preprocessing = f"{PREPROCESSING}; classifier features before the last linear layer (ReLU, global average pool)"

    def __init__(self, *, weights: WeightsManager, device: torch.device):
        self.model = load_classifier_net(weights, device)[0]
        trust = shipped_trust(weights, CLASSIFIER)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        self.name = "demo-classifier-features"
        self.dim = self.model.feature_dim
        self.device = device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.features(demo_input(images)).float()


class DemoClassifierBlock2(FeatureExtractor):
    """32-d: the demo classifier after its second stride-2 stage (32 px, ReLU), averaged over space."""

    artifacts = (CLASSIFIER,)

    preprocessing = (
        f"{PREPROCESSING}; classifier activations after stage {CLASSIFIER_FEATURE_STAGE} (32 px, ReLU), global average pool"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device):
        self.model = load_classifier_net(weights, device)[0]
        trust = shipped_trust(weights, CLASSIFIER)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        self.name = "demo-classifier-block2"
        self.dim = CLASSIFIER_WIDTHS[CLASSIFIER_FEATURE_STAGE - 1]
        self.device = device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.stage_features(demo_input(images), CLASSIFIER_FEATURE_STAGE).float()


class DemoSegmenterEncoder(FeatureExtractor):
    """160-d: each encoder level of the demo U-Net (64, 32, 16, 8 px; ReLU) averaged over space, concatenated."""

    artifacts = (SEGMENTER,)

    preprocessing = f"{PREPROCESSING}; U-Net encoder levels (64/32/16/8 px, ReLU) each averaged over space, concatenated"

    def __init__(self, *, weights: WeightsManager, device: torch.device):
        self.model = load_segmenter_net(weights, device)
        trust = shipped_trust(weights, SEGMENTER)
        self.weights_hash, self.weights_status = trust.sha256, trust.status
        self.name = "demo-segmenter-encoder"
        self.dim = sum(SEGMENTER_WIDTHS)
        self.device = device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([level.mean(dim=(2, 3)) for level in self.model.encode(demo_input(images))], dim=1).float()


class DemoPixels(FeatureExtractor):
    """64-d and weight-free: the image average-pooled to 8 x 8 cells, flattened row by row."""

    weights_hash = WEIGHT_FREE
    weights_status = WEIGHT_FREE
    preprocessing = (
        f"[0,1] image -> adaptive average pooling of the whole image to {PIXEL_GRID}x{PIXEL_GRID} cells (no resize, "
        f"no network), flattened row by row ({PIXEL_GRID * PIXEL_GRID}-d); weight-free"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device):
        self.name = "demo-pixels"
        self.dim = PIXEL_GRID * PIXEL_GRID
        self.device = device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images, PIXEL_GRID).flatten(1).float()
