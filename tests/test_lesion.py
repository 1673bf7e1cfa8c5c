"""Lesion-in-box adherence: Grad-CAM on networks whose evidence is known, the in-box / pointing /
laterality measures on hand-made maps, target choice, the classifiers' hooks, and a tiny demo run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from xreal_bench.config import config_from_dict
from xreal_bench.demo.command import demo_tables
from xreal_bench.demo.evaluators import DemoClassifier
from xreal_bench.evaluation import evaluate
from xreal_bench.imaging import dequantize, load_standard
from xreal_bench.lesion_audit import LesionTarget, choose_target, image_values, lesion_audit, lesion_targets
from xreal_bench.metrics import table
from xreal_bench.metrics.evaluators.base import Classifier, EvidenceTarget, NoEvidenceMapsError
from xreal_bench.metrics.gradcam import grad_cam, in_box_share, laterality_share, pointing_hit
from xreal_bench.metrics.suite import Suite
from xreal_bench.pipeline import generate, open_session
from xreal_bench.reports.export import run_document, schema
from xreal_bench.reports.runs import load_run
from xreal_bench.types import Box, BoxSet, Case, CaseFacts
from xreal_bench.weights import WeightsManager

POINTING, LATERALITY = table.LESION.parts
SIZE = 64
SQUARE = (slice(36, 52), slice(8, 24))  # rows, columns of the bright square


class SquareNet(nn.Module):
    """4x average pool, a fixed 3x3 conv with a bright-detector and a dark-detector channel, ReLU
    (the evidence layer, 16x16), global average pool, a linear head: label 0 <- bright, label 1 <- dark."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight[0].fill_(1.0 / 9)
            self.conv.weight[1].fill_(-1.0 / 9)
            self.conv.bias.copy_(torch.tensor([-0.5, 0.5]))
            self.head.weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 4.0]]))
            self.head.bias.fill_(-1.0)

    def evidence(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(F.avg_pool2d(x, 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.evidence(x).mean(dim=(2, 3)))


class SquareClassifier(Classifier):
    labels = ("Atelectasis", "Lung Lesion")
    calibrated_thresholds = None
    name = "square-classifier"
    weights_hash = "0" * 64
    preprocessing = "none"
    evidence_layer = "conv (after ReLU)"

    def __init__(self):
        self.model, self.device = SquareNet().eval(), torch.device("cpu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(images))

    def evidence_target(self, images: torch.Tensor) -> EvidenceTarget:
        activations = self.model.evidence(images)
        return EvidenceTarget(activations, self.model.head(activations.mean(dim=(2, 3))))


class BlindClassifier(SquareClassifier):
    name = "blind-classifier"
    evidence_layer = ""
    evidence_target = Classifier.evidence_target


def square_images() -> torch.Tensor:
    images = torch.full((2, 1, SIZE, SIZE), 0.1)
    images[0, 0, SQUARE[0], SQUARE[1]] = 0.9
    images[1, 0, 4:20, 40:56] = 0.9  # the square elsewhere
    return images


def bilinear_upsample_pil(cam: np.ndarray, size: int) -> np.ndarray:
    """PIL's bilinear resize (pixel centres, edges clamped) of a float map: an independent upsampling."""
    return np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR))


def reference_grad_cam(net: SquareNet, image: torch.Tensor, label: int) -> np.ndarray:
    """Grad-CAM the textbook way: the layer's output kept, backward() from the logit, weights by hand."""
    net.zero_grad()
    activations = F.relu(net.conv(F.avg_pool2d(image[None], 4)))
    activations.retain_grad()
    net.head(activations.mean(dim=(2, 3)))[0, label].backward()
    a, g = activations[0].detach().numpy(), activations.grad[0].numpy()
    cam = np.maximum(sum(g[k].mean() * a[k] for k in range(a.shape[0])), 0.0)
    return bilinear_upsample_pil(cam, image.shape[-1])


# ---------------------------------------------------------------- Grad-CAM


def test_grad_cam_peaks_on_the_square_it_detects():
    classifier = SquareClassifier()
    maps = classifier.evidence_maps(square_images(), [0, 0])
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == torch.float32
    first = np.zeros((SIZE, SIZE), dtype=bool)
    first[SQUARE] = True
    second = np.zeros_like(first)
    second[4:20, 40:56] = True
    cams = maps.numpy()
    assert pointing_hit(cams[0], first) == 1.0 and pointing_hit(cams[1], second) == 1.0
    assert in_box_share(cams[0], first) > 0.8 and in_box_share(cams[1], second) > 0.8
    assert in_box_share(cams[0], second) == 0.0  # no evidence where there is no square
    dark = classifier.evidence_maps(square_images(), [1, 1]).numpy()  # the dark detector: evidence off the square
    assert pointing_hit(dark[0], first) == 0.0 and in_box_share(dark[0], first) < 0.05


def test_grad_cam_matches_an_independent_implementation():
    classifier = SquareClassifier()
    images = square_images()
    images[1] += 0.05 * torch.rand(1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    for label in (0, 1):
        ours = classifier.evidence_maps(images, [label, label]).numpy()
        for b in range(2):
            np.testing.assert_allclose(ours[b], reference_grad_cam(classifier.model, images[b], label), rtol=1e-4, atol=1e-6)
    mixed = classifier.evidence_maps(images, [1, 0]).numpy()  # one label per image within a batch
    np.testing.assert_allclose(mixed[0], reference_grad_cam(classifier.model, images[0], 1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mixed[1], reference_grad_cam(classifier.model, images[1], 0), rtol=1e-4, atol=1e-6)


def test_grad_cam_weights_are_mean_gradients():
    activations = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]], [[4.0, 0.0], [1.0, 1.0]]]], requires_grad=True)
    score = (activations[0, 0] * torch.tensor([[1.0, 1.0], [1.0, 5.0]])).sum() - activations[0, 1].sum() * 2.0
    cam = grad_cam(activations, score[None])
    # w = (mean grad ch0, ch1) = (2.0, -2.0): ReLU(2*A0 - 2*A1) = ReLU([[-6, 4], [-2, 4]])
    assert cam.tolist() == [[[0.0, 4.0], [0.0, 4.0]]]


def test_evidence_maps_validate_input_and_labels_and_run_under_no_grad():
    classifier = SquareClassifier()
    with pytest.raises(ValueError, match=r"square-classifier: images must be a \[B, 1, H, W\] tensor, got \(2, 64, 64\)"):
        classifier.evidence_maps(torch.zeros(2, SIZE, SIZE), [0, 0])
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        classifier.evidence_maps(torch.full((1, 1, SIZE, SIZE), 2.0), [0])
    with pytest.raises(ValueError, match=r"label_indices must be 2 indices into its 2 labels, got \[0, 2\]"):
        classifier.evidence_maps(square_images(), [0, 2])
    with pytest.raises(ValueError, match=r"label_indices must be 2 indices into its 2 labels, got \[0\]"):
        classifier.evidence_maps(square_images(), [0])
    with torch.no_grad():
        maps = classifier.evidence_maps(square_images(), [0, 0])
    assert float(maps.max()) > 0 and all(p.grad is None for p in classifier.model.parameters())


def test_a_classifier_without_evidence_maps_is_named():
    message = "classifier 'blind-classifier' gives no Grad-CAM evidence maps"
    with pytest.raises(NoEvidenceMapsError, match=message):
        BlindClassifier().evidence_maps(square_images(), [0, 0])
    session = SimpleNamespace(cfg=SimpleNamespace(metrics=SimpleNamespace(enabled=[table.LESION.name])))
    with pytest.raises(NoEvidenceMapsError, match=f"{table.LESION.name}: {message}"):
        lesion_audit(session, Suite("toy", classifier=BlindClassifier()), progress=False)
    session.cfg.metrics.enabled = ["auc_macro"]  # not enabled, or no classifier: no pass
    assert lesion_audit(session, Suite("toy", classifier=BlindClassifier()), progress=False) is None
    session.cfg.metrics.enabled = [table.LESION.name]
    assert lesion_audit(session, Suite("toy"), progress=False) is None


# ---------------------------------------------------------------- the measures


def mask(shape, rows, cols) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[rows, cols] = True
    return m


def test_in_box_share_and_pointing_on_a_hand_made_map():
    cam = np.array([[0.0, 1.0, 2.0, 0.0], [0.0, 3.0, 4.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0]])
    box = mask(cam.shape, slice(0, 2), slice(1, 3))  # holds 1 + 2 + 3 + 4 = 10 of 20
    assert in_box_share(cam, box) == 0.5
    assert pointing_hit(cam, box) == 0.0  # the maximum (9) is outside
    cam[3, 3] = 0.0
    assert in_box_share(cam, box) == 10 / 11 and pointing_hit(cam, box) == 1.0
    tie = np.array([[5.0, 0.0], [0.0, 5.0]])  # first maximal pixel in row-major order: (0, 0)
    assert pointing_hit(tie, mask((2, 2), 0, 0)) == 1.0 and pointing_hit(tie, mask((2, 2), 1, 1)) == 0.0
    zero = np.zeros((4, 4))
    assert math.isnan(in_box_share(zero, box)) and math.isnan(pointing_hit(zero, box))


def test_laterality_share_on_hand_made_lungs():
    shape = (4, 6)
    cam = np.array([[1.0, 1.0, 0.0, 0.0, 2.0, 2.0]] * 4)  # 8 in the image-left columns, 16 on the image-right
    right_lung = mask(shape, slice(0, 4), slice(0, 2))  # patient's right lung: the image's left
    left_lung = mask(shape, slice(0, 4), slice(4, 6))
    mostly_left = mask(shape, slice(0, 2), slice(3, 6))  # 4 pixels in the left lung, none in the right
    assert laterality_share(cam, mostly_left, left_lung, right_lung) == 16 / 24
    mostly_right = mask(shape, slice(0, 4), slice(0, 5))  # 8 in the right lung, 4 in the left
    assert laterality_share(cam, mostly_right, left_lung, right_lung) == 8 / 24
    assert math.isnan(laterality_share(cam, mask(shape, slice(0, 4), slice(2, 4)), left_lung, right_lung))  # neither
    assert math.isnan(laterality_share(cam, mask(shape, 0, slice(0, 6)), left_lung, right_lung))  # both equally
    assert math.isnan(laterality_share(np.zeros(shape), mostly_left, left_lung, right_lung))  # no energy in the lungs
    values = image_values(cam, mostly_left, None)  # no anatomy: laterality undefined
    assert values[:2] == (in_box_share(cam, mostly_left), 1.0) and math.isnan(values[2])


# ---------------------------------------------------------------- targets


def facts(case_id: str, boxes: BoxSet | None, sample_boxes: tuple[BoxSet, ...] = ()) -> CaseFacts:
    case = Case(case_id=case_id, image_path=Path(f"/{case_id}.jpg"), subject_id="1", study_id="2", view="PA", labels=(0,) * 14)
    return CaseFacts(case, boxes=boxes, sample_boxes=sample_boxes)


def test_target_choice_union_and_skipped_boxes():
    labels = ("Pleural Effusion", "Pneumothorax", "Atelectasis")  # not in CheXpert order
    effusion = [Box("Pleural Effusion", 0.0, 0.5, 0.25, 1.0), Box("Pleural Effusion", 0.75, 0.75, 1.2, 1.0)]
    box_set = BoxSet("boxes_csv", (Box("Pneumothorax", 0.4, 0.4, 0.5, 0.5), *effusion, Box("Fracture", 0.1, 0.1, 0.2, 0.2)))
    target, skipped = choose_target(box_set, labels)
    assert target == LesionTarget("Pleural Effusion", 0, tuple(effusion))  # before Pneumothorax in CheXpert order
    assert skipped == [
        "label 'Fracture' is not a classifier label",
        "label 'Pneumothorax': the case is scored on a label first in CheXpert order",
    ]
    m = target.mask(8)  # union: rows 4..7 x cols 0..1, and rows 6..7 x cols 6..7 (clipped at 1.0)
    assert m.sum() == 8 + 4 and m[4:8, 0:2].all() and m[6:8, 6:8].all()
    cases = {
        "a": facts("a", box_set),
        "b": facts("b", BoxSet("anatomy_rule", (Box("Atelectasis", 0, 0, 1, 1),))),
        "c": facts("c", None, (BoxSet("random", (Box("Atelectasis", 0, 0, 1, 1),)),)),
        "d": facts("d", BoxSet("boxes_csv", (Box("Fracture", 0, 0, 1, 1),))),
        "e": facts("e", BoxSet("none")),
    }
    plan = lesion_targets(cases, ["a", "b", "c", "d", "e", "missing"], labels)
    assert list(plan.targets) == ["a"]
    assert plan.skipped == {
        "label 'Fracture' is not a classifier label": 2,
        "label 'Pneumothorax': the case is scored on a label first in CheXpert order": 1,
    }
    assert plan.unscored == {"anatomy_rule": 1, "random": 1, "boxes_csv without a classifier label": 1, "none": 2}


# ---------------------------------------------------------------- the classifiers' hooks


@pytest.fixture(scope="module")
def demo_classifier():
    return DemoClassifier(weights=WeightsManager(), device=torch.device("cpu"))


def test_demo_classifier_evidence_maps_shape_and_gradient_path(demo_classifier):
    images = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    indices = [demo_classifier.labels.index("Cardiomegaly"), demo_classifier.labels.index("Pneumothorax")]
    maps = demo_classifier.evidence_maps(images, indices)
    assert maps.shape == (2, 96, 96) and maps.dtype == torch.float32 and float(maps.min()) >= 0
    target = demo_classifier.evidence_target(images.requires_grad_(True))
    assert target.activations.shape == (2, 64, 8, 8)  # the body's last stage at the 128 px input
    np.testing.assert_allclose(torch.sigmoid(target.logits).detach(), demo_classifier(images.detach()), rtol=1e-5, atol=1e-6)
    body = demo_classifier.model.body
    for b, label in enumerate(indices):  # independent: hook on the body, backward() from the logit
        kept: dict[str, torch.Tensor] = {}

        def keep(_module, _inputs, output, kept=kept):
            output.retain_grad()
            kept["a"] = output

        handle = body.register_forward_hook(keep)
        try:
            demo_classifier.model.zero_grad()
            x = F.interpolate(images[b : b + 1].detach(), size=(128, 128), mode="bilinear", align_corners=False, antialias=True)
            demo_classifier.model(x * 2 - 1)[0, label].backward()
        finally:
            handle.remove()
        a, g = kept["a"][0].detach().numpy(), kept["a"].grad[0].numpy()
        cam = np.maximum(np.tensordot(g.mean(axis=(1, 2)), a, axes=1), 0.0)
        np.testing.assert_allclose(maps[b].numpy(), bilinear_upsample_pil(cam, 96), rtol=1e-4, atol=1e-6)
    demo_classifier.model.zero_grad(set_to_none=True)


def test_xrv_densenet_evidence_is_the_logits_feature_map_inside_its_crop(tmp_path):
    from xreal_bench.metrics.evaluators.testing import unpublished_release_artifacts
    from xreal_bench.metrics.evaluators.xrv import XRVDenseNetClassifier, import_xrv

    manager = WeightsManager(tmp_path)
    manager.overrides.update(unpublished_release_artifacts())
    path = manager.path("xrv-densenet-mimic_ch")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(import_xrv().models.DenseNet(num_classes=18, in_channels=1), path)
    classifier = XRVDenseNetClassifier(weights=manager, device=torch.device("cpu"))
    images = torch.rand(1, 1, 224, 256, generator=torch.Generator().manual_seed(1))  # centre crop: columns 16..239
    target = classifier.evidence_target(images.clone().requires_grad_(True))
    assert target.activations.shape == (1, 1024, 7, 7) and target.region == (0, 16, 224, 224)
    np.testing.assert_allclose(torch.sigmoid(target.logits).detach(), classifier(images), rtol=1e-5, atol=1e-6)
    label = classifier.labels.index("Edema")
    maps = classifier.evidence_maps(images, [label])
    assert maps.shape == (1, 224, 256) and float(maps[..., :16].abs().max()) == 0.0 and float(maps[..., 240:].abs().max()) == 0.0
    (g,) = torch.autograd.grad(target.logits[0, label], target.activations)
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * target.activations).sum(1))[0].detach().numpy()
    np.testing.assert_allclose(maps[0, :, 16:240].numpy(), bilinear_upsample_pil(cam, 224), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- end to end on the demo's phantoms


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesion") / "run"
    tables = demo_tables(str(root))
    tables["dataset"]["synthetic"] = {"n_subjects": 16, "image_size": 192}
    tables["generators"] = {"phantom": {}, "shuffled": {}}
    tables["metrics"].update(enabled=[table.LESION.name], bootstrap=20)
    tables["run"].update(resolution=192, samples_per_condition=1)
    session = open_session(config_from_dict(tables), progress=False)
    generate(session, progress=False)
    evaluate(session, progress=False)
    return session, root


def test_phantom_puts_more_evidence_in_the_box_than_shuffled(demo_run):
    _, out = demo_run
    df = pd.read_csv(out / "results.csv")
    value = df[df.subset == "all"].set_index(["generator", "metric"])["value"]
    assert value["phantom", table.LESION.name] > value["shuffled", table.LESION.name] + 0.05
    assert value["phantom", POINTING.name] >= value["shuffled", POINTING.name]
    assert {table.LESION.name, POINTING.name, LATERALITY.name} <= set(df[df.generator == "real"].metric)
    assert set(df.generator) == {"real", "phantom", "shuffled"}


def test_run_records_provenance_and_per_image_values(demo_run, demo_classifier):
    session, out = demo_run
    lesion = json.loads((out / "results.json").read_text())["lesion"]
    boxed = lesion["boxed_cases"]
    assert boxed > 0 and sum(lesion["labels"].values()) == boxed
    assert lesion["classifier"] == "demo:demo-classifier" and lesion["gradient_target"] == "pre-sigmoid logit of the box's label"
    assert lesion["layer"] == demo_classifier.evidence_layer and lesion["box_source"] == "boxes_csv"
    assert boxed + sum(lesion["unscored_cases"].values()) == len(session.scan.cases)
    assert lesion["images"]["real"] == {"boxed": boxed, "undecodable": 0} and lesion["images"]["phantom"]["boxed"] == boxed
    frame = pd.read_csv(out / "per_image.csv", dtype={"case_id": str})
    real = frame[frame.generator == "real"].set_index("case_id")
    assert int(real[table.LESION.key].notna().sum()) <= boxed and real[table.LESION.key].isna().sum() >= len(real) - boxed
    assert real[LATERALITY.key].dropna().between(0, 1).all() and set(real[POINTING.key].dropna()) <= {0.0, 1.0}
    # one real boxed case by hand: decode, Grad-CAM of its label, share of energy in its boxes
    from xreal_bench.cases import read_cases

    facts_by_id = read_cases(out)
    case_id = next(c for c in real.index if not np.isnan(real.loc[c, table.LESION.key]))
    target, _ = choose_target(facts_by_id[case_id].boxes, demo_classifier.labels)
    pixels = dequantize(load_standard(facts_by_id[case_id].case.image_path, 192, 8, session.cfg.dataset.geometry))
    cam = demo_classifier.evidence_maps(torch.from_numpy(pixels)[None, None], [target.column])[0].numpy()
    assert real.loc[case_id, table.LESION.key] == pytest.approx(in_box_share(cam, target.mask(192)), rel=1e-6)


def test_the_lesion_section_follows_the_results_schema(demo_run):
    _, out = demo_run
    document = run_document(load_run(out))
    validator = jsonschema.Draft202012Validator(schema())
    validator.validate(document)
    document["provenance"]["lesion"]["images"]["real"].pop("undecodable")
    assert not validator.is_valid(document)


def test_boxes_are_written_for_the_metric_and_their_absence_is_named(demo_run, tmp_path, capsys):
    """A generator that reads no boxes: ``cases.jsonl`` gets them only when the metric is enabled at generation."""
    session, _ = demo_run
    out = tmp_path / "run"
    tables = session.cfg.to_dict()
    tables["generators"] = {"shuffled": {}}
    tables["metrics"].update(enabled=["auc_macro"], bootstrap=10)
    tables["run"]["out"] = str(out)
    generate(open_session(config_from_dict(tables), progress=False), progress=False)
    tables["metrics"]["enabled"] = [table.LESION.name]
    session = open_session(config_from_dict(tables), progress=False)
    capsys.readouterr()
    evaluate(session, progress=False)
    assert f"warning: {table.LESION.name}: cases.jsonl holds no pathology boxes" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["lesion"]["boxed_cases"] == 0
    assert pd.read_csv(out / "results.csv").empty
    generate(session, progress=False)  # images kept; case facts written again, now with boxes
    evaluate(session, progress=False)
    assert "no pathology boxes" not in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["lesion"]["boxed_cases"] > 0
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.generator) == {"real", "shuffled"} and set(rows.metric) == {table.LESION.name, POINTING.name, LATERALITY.name}
