"""Train the demo evaluators on freshly rendered phantoms and write their weight files.

    python -m xreal_bench.demo.train_evaluators --out xreal_bench/demo/weights

Data: phantoms rendered directly with :mod:`xreal_bench.demo.phantoms` at 256 px, each one in
two versions that share anatomy and findings: the demo dataset's texture (stored as JPEG
q95, exactly like the demo's real images) and the ``phantom`` generator's alternate texture
(stored as 8-bit PNG, like generated images). Findings: a fifth of the phantoms are normal,
the others draw each of the eight findings with probability 0.25 (at least one). Seeds are
``SeedSequence([SEED, split, index])`` with split 1 train, 2 validation, 3 held-out test
(``tests/test_demo_evaluators.py`` uses 4): disjoint from each other and from the demo
dataset (``SeedSequence([seed, 0x5EED])``-derived).

- The segmenter learns both textures (the demo's ``phantom`` images must segment like real
  ones), with soft one-hot targets: the 256 px label maps area-averaged to its 64 px output.
- The classifier learns the dataset texture only, with generic photometric augmentation
  (:func:`augment`: gamma, contrast, brightness, film grain up to the dataset's own grain).
  Its penultimate layer is the demo's FID space, which should behave like Inception's on real
  generators: a realistic but unconditioned image (``shuffled``) close to real, another
  texture (``phantom``) clearly farther, noise farthest. Measured on the demo's images (FID
  of ``phantom`` / ``shuffled`` / ``noise``): without augmentation the unseen texture throws
  the features as far as noise (115 / 1.2 / 66: noise is not worst); trained on both
  textures the features are texture-blind (1.2 / 1.2 / 95); with this augmentation 4.6 /
  1.1 / 137, and with the negatives below too (the shipped file) 5.3 / 0.8 / 73.
- The classifier also sees non-radiographs (:func:`non_radiographs`: smooth random fields,
  flat images, ramps; 10 % as many as phantoms) as negatives for every finding. Without them
  it reported Atelectasis, Cardiomegaly, Consolidation and Pleural Effusion with p > 0.98 on
  the demo's ``noise`` images, which then scored a higher F1 than ``shuffled``.
- Thresholds: Youden-J per class on the validation phantoms (dataset texture), stored in the
  classifier file's metadata (``thresholds``) with the label names (``labels``).
- Held-out test: both files are loaded back through the evaluator classes (the shipped
  loading path) and scored: Dice per structure and per texture, AUC per class.

Seeded (rendering, initialisation, data order, augmentation); with the same torch build and
thread count a rerun gives the same weights. ``torch.set_num_threads(--threads)`` defaults to
the CPUs this process may use; rendering runs in as many processes. Time on 2 CPU cores:
about 3 min rendering (7200 phantoms x 2 textures; ``--cache`` skips it next time), 5 min
segmenter, 6-8 min classifier: about 15 min in all. Held-out scores of the shipped files
(400 test phantoms): Dice lungs 0.990 / heart 0.992 / aorta 0.944 (dataset texture), 0.985 /
0.987 / 0.926 (phantom texture); macro AUC 0.995 (dataset), 0.975 (phantom texture).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from xreal_bench.demo.evaluators import (
    CLASSIFIER_ARTIFACT,
    SEGMENTER_ARTIFACT,
    SEGMENTER_CLASSES,
    DemoClassifier,
    DemoClassifierNet,
    DemoSegmenter,
    DemoUNet,
    demo_input,
)
from xreal_bench.demo.phantoms import (
    ALTERNATE_STYLE,
    DATASET_STYLE,
    DRAWN_FINDINGS,
    render_from_anatomy,
    render_phantom,
)
from xreal_bench.demo.synthetic import jpeg_bytes
from xreal_bench.imaging import dequantize, pil_to_gray, quantize
from xreal_bench.metrics.classification import Thresholds, evaluate_classification, fit_thresholds
from xreal_bench.metrics.dice import dice_per_structure, label_map_to_masks
from xreal_bench.weights import Artifact, WeightsManager

SEED = 20_240_917
SPLITS = {"train": 1, "validate": 2, "test": 3}
RENDER_SIZE = 256
NORMAL_SHARE = 0.2
FINDING_RATE = 0.25
STYLES = ("dataset", "alternate")
#: Non-radiograph negatives shown to the classifier, as a share of the training phantoms.
NON_RADIOGRAPH_SHARE = 0.1
NON_RADIOGRAPH_SPLIT = 5


@dataclass
class PhantomSet:
    """Rendered phantoms: 8-bit images per texture, label maps, finding labels (DRAWN_FINDINGS order)."""

    images: dict[str, np.ndarray]  # style -> uint8 [N, 256, 256]
    anatomy: np.ndarray  # uint8 [N, 256, 256]
    labels: np.ndarray  # float32 [N, len(DRAWN_FINDINGS)]

    def __len__(self) -> int:
        return len(self.labels)

    def floats(self, style: str, idx: np.ndarray | slice = slice(None)) -> torch.Tensor:
        """Images ``[n, 1, 256, 256]`` in [0, 1], as the evaluation engine passes them."""
        return torch.from_numpy(dequantize(self.images[style][idx]))[:, None]


def sample_findings(rng: np.random.Generator) -> tuple[str, ...]:
    if rng.random() < NORMAL_SHARE:
        return ()
    chosen = tuple(f for f in DRAWN_FINDINGS if rng.random() < FINDING_RATE)
    return chosen or (DRAWN_FINDINGS[int(rng.integers(len(DRAWN_FINDINGS)))],)


def as_stored_jpeg(image: np.ndarray) -> np.ndarray:
    """The pixels the demo's real images have after their JPEG round trip (uint8)."""
    with Image.open(io.BytesIO(jpeg_bytes(image))) as img:
        return quantize(pil_to_gray(img))


def render_sample(split: int, index: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One phantom in both textures: (dataset uint8, alternate uint8, label map, labels)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, split, index]))
    findings = sample_findings(rng)
    phantom = render_phantom(rng, RENDER_SIZE, findings)
    alternate = render_from_anatomy(phantom.anatomy, findings, phantom.boxes, rng, ALTERNATE_STYLE)
    labels = np.array([f in findings for f in DRAWN_FINDINGS], dtype=np.float32)
    return as_stored_jpeg(phantom.image), quantize(alternate), phantom.anatomy, labels


def render_one(args: tuple[int, int, int]):
    torch.set_num_threads(1)
    return render_sample(*args)


def render_set(split: int, n: int, workers: int, seed: int = SEED, desc: str = "") -> PhantomSet:
    """``n`` phantoms of ``split`` (index 0..n-1), rendered in ``workers`` processes."""
    jobs = [(split, i, seed) for i in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            samples = list(
                tqdm(pool.map(render_one, jobs, chunksize=16), total=n, desc=desc or f"render split {split}", unit="img")
            )
    else:
        samples = [render_sample(*j) for j in tqdm(jobs, desc=desc or f"render split {split}", unit="img")]
    dataset, alternate, anatomy, labels = (np.stack(a) for a in zip(*samples))
    return PhantomSet({"dataset": dataset, "alternate": alternate}, anatomy, labels)


def cached_set(cache: Path | None, name: str, n: int, workers: int, seed: int) -> PhantomSet:
    """:func:`render_set`, kept as ``<cache>/<name>-<seed>-<n>.npz`` when ``cache`` is given."""
    path = cache / f"{name}-{seed}-{n}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return PhantomSet({s: z[s] for s in STYLES}, z["anatomy"], z["labels"])
    data = render_set(SPLITS[name], n, workers, seed, desc=f"render {name}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"anatomy": data.anatomy, "labels": data.labels, **data.images}
        np.savez(path, **arrays)
    return data


def non_radiographs(seed: int, start: int, stop: int) -> torch.Tensor:
    """Images with no chest in them, ``[n, 1, 256, 256]`` in [0, 1] (8-bit levels): smooth
    random fields (a Gaussian grid of 2-32 cells, bicubic-upsampled), flat images and linear
    ramps, each at a random mean and contrast with white grain. Seeded per index
    (``SeedSequence([seed, NON_RADIOGRAPH_SPLIT, i])``). The demo's ``noise`` generator draws
    from this family (an 8-cell field): shown as negatives for every finding, they keep the
    classifier from reporting findings on inputs without anatomy."""
    out = []
    for i in range(start, stop):
        rng = np.random.default_rng(np.random.SeedSequence([seed, NON_RADIOGRAPH_SPLIT, i]))
        kind = int(rng.integers(3))
        if kind == 0:
            cells = int(rng.integers(2, 33))
            coarse = torch.from_numpy(rng.standard_normal((1, 1, cells, cells)).astype(np.float32))
            field = F.interpolate(coarse, size=(RENDER_SIZE, RENDER_SIZE), mode="bicubic", align_corners=False)[0, 0].numpy()
        elif kind == 1:
            field = np.zeros((RENDER_SIZE, RENDER_SIZE), np.float32)
        else:
            angle = rng.uniform(0, 2 * np.pi)
            ramp = np.linspace(-1.0, 1.0, RENDER_SIZE, dtype=np.float32)
            field = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
        field = field / max(float(field.std()), 1e-6) if field.any() else field
        image = (
            rng.uniform(0.2, 0.8) + rng.uniform(0.02, 0.25) * field + rng.uniform(0.0, 0.06) * rng.standard_normal(field.shape)
        )
        out.append(quantize(image))
    return torch.from_numpy(dequantize(np.stack(out)))[:, None]


# --------------------------------------------------------------------------- training


def network_inputs(data: PhantomSet, style: str, batch: int = 256) -> torch.Tensor:
    """The networks' 128 px inputs of every image (computed once; float32)."""
    return torch.cat([demo_input(data.floats(style, slice(i, i + batch))) for i in range(0, len(data), batch)])


def soft_targets(anatomy: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Class fractions of each 4x4 block of the 256 px label maps: ``[N, 5, 64, 64]`` float16."""
    out = []
    for i in range(0, len(anatomy), batch):
        one_hot = F.one_hot(torch.from_numpy(anatomy[i : i + batch]).long(), SEGMENTER_CLASSES).permute(0, 3, 1, 2).float()
        out.append(F.avg_pool2d(one_hot, RENDER_SIZE // 64).half())
    return torch.cat(out)


GAMMA_RANGE = 1.4  # gamma log-uniform in [1/1.4, 1.4]
CONTRAST_RANGE = 1.25  # contrast gain log-uniform in [1/1.25, 1.25]
BRIGHTNESS = 0.04
GRAIN_BLUR = (0.3, 1.2)  # px at 128


def augment(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Photometric augmentation of network inputs (``[B, 1, 128, 128]`` in [-1, 1]), per image:
    gamma, contrast and brightness, then film grain (Gaussian noise blurred by one random
    width per batch) with a standard deviation up to the dataset's own (``DATASET_STYLE.grain``)."""
    from torchvision.transforms.v2.functional import gaussian_blur

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(len(x), 1, 1, 1, generator=rng)

    y = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    y = y ** torch.exp(uniform(-math.log(GAMMA_RANGE), math.log(GAMMA_RANGE)))
    y = (
        (y - 0.5) * torch.exp(uniform(-math.log(CONTRAST_RANGE), math.log(CONTRAST_RANGE)))
        + 0.5
        + uniform(-BRIGHTNESS, BRIGHTNESS)
    )
    width = float(uniform(*GRAIN_BLUR)[0])
    grain = gaussian_blur(torch.randn(x.shape, generator=rng), kernel_size=[7, 7], sigma=[width, width])
    y = y + uniform(0.0, DATASET_STYLE.grain) * grain / grain.std()
    return y.clamp(0.0, 1.0) * 2.0 - 1.0


def fit(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn,
    *,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    desc: str,
    augmented: bool = False,
) -> None:
    """AdamW with a one-cycle schedule over shuffled mini-batches (seeded order and augmentation)."""
    order_rng = torch.Generator().manual_seed(seed)
    augment_rng = torch.Generator().manual_seed(seed + 1)
    steps = epochs * (len(inputs) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    bar = tqdm(total=steps, desc=desc, unit="step")
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=order_rng)
        for k in range(len(inputs) // batch):
            idx = order[k * batch : (k + 1) * batch]
            x = augment(inputs[idx], augment_rng) if augmented else inputs[idx]
            loss = loss_fn(model(x), targets[idx].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    bar.close()
    model.eval()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def predict(model: torch.nn.Module, inputs: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


def train_segmenter(train: PhantomSet, args: argparse.Namespace) -> DemoUNet:
    """The U-Net on both textures of every training phantom."""
    torch.manual_seed(args.seed)  # initialisation
    model = DemoUNet()
    inputs = torch.cat([network_inputs(train, s) for s in STYLES])
    targets = soft_targets(train.anatomy).repeat(len(STYLES), 1, 1, 1)
    fit(
        model,
        inputs,
        targets,
        soft_cross_entropy,
        epochs=args.seg_epochs,
        batch=args.batch,
        lr=3e-3,
        seed=args.seed,
        desc="segmenter",
    )
    return model


def train_classifier(train: PhantomSet, val: PhantomSet, args: argparse.Namespace) -> tuple[DemoClassifierNet, Thresholds]:
    """The CNN on the dataset texture plus non-radiographs (negatives), augmented; Youden-J on ``val``."""
    torch.manual_seed(args.seed + 1)  # initialisation
    model = DemoClassifierNet(len(DRAWN_FINDINGS))
    n_neg = round(NON_RADIOGRAPH_SHARE * len(train))
    negatives = (
        torch.cat([demo_input(non_radiographs(args.seed, i, i + 256)) for i in range(0, n_neg, 256)])
        if n_neg
        else torch.zeros(0, 1, 128, 128)
    )
    inputs = torch.cat([network_inputs(train, "dataset"), negatives[:n_neg]])
    targets = torch.cat([torch.from_numpy(train.labels), torch.zeros(n_neg, len(DRAWN_FINDINGS))])
    fit(
        model,
        inputs,
        targets,
        F.binary_cross_entropy_with_logits,
        epochs=args.cls_epochs,
        batch=args.batch,
        lr=3e-3,
        seed=args.seed + 1,
        desc="classifier",
        augmented=True,
    )
    probs = torch.sigmoid(predict(model, network_inputs(val, "dataset"))).numpy()
    youden = fit_thresholds(probs, val.labels, DRAWN_FINDINGS, "youden", source=f"validation phantoms, n={len(val)}")
    if youden.unfitted:
        raise RuntimeError(f"could not fit thresholds: {youden.unfitted}; render more validation phantoms (--n-val)")
    return model, youden


# --------------------------------------------------------------------------- files


def save(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"architecture": model.architecture, **metadata})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manager_for(out: Path) -> WeightsManager:
    """A weights manager that finds the two files in ``out`` (the shipped loading path)."""
    artifacts = {
        name: Artifact(
            name=name,
            path=f"{name}.safetensors",
            source="xreal_bench.demo.train_evaluators",
            license="MIT (xreal-bench)",
            description=name,
        )
        for name in (SEGMENTER_ARTIFACT, CLASSIFIER_ARTIFACT)
    }
    return WeightsManager(out, artifacts)


# --------------------------------------------------------------------------- held-out scores


def heldout_dice(segmenter: DemoSegmenter, data: PhantomSet, style: str, batch: int = 64) -> dict[str, float]:
    """Mean Dice per structure of the segmenter's masks vs the label maps (256 px)."""
    scores: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(data), batch):
        masks = segmenter(data.floats(style, slice(i, i + batch))).numpy()
        for k, v in dice_per_structure(masks, label_map_to_masks(data.anatomy[i : i + batch])).items():
            scores.setdefault(k, []).append(v)
    return {k: float(np.nanmean(np.concatenate(v))) for k, v in scores.items()}


def heldout_auc(classifier: DemoClassifier, data: PhantomSet, style: str, batch: int = 64) -> dict[str, float]:
    """Per-class and macro AUC of the classifier on ``data`` (sklearn via evaluate_classification)."""
    probs = torch.cat([classifier(data.floats(style, slice(i, i + batch))) for i in range(0, len(data), batch)]).numpy()
    columns = [classifier.labels.index(n) for n in DRAWN_FINDINGS]
    thresholds = fit_thresholds(None, None, DRAWN_FINDINGS, "calibrated", calibrated=classifier.calibrated_thresholds)
    result = evaluate_classification(probs[:, columns], data.labels, DRAWN_FINDINGS, thresholds)
    return {**result.auc, "macro": result.auc_macro, "macro F1": result.f1_macro}


def fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in scores.items())


# --------------------------------------------------------------------------- main


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m xreal_bench.demo.train_evaluators",
        description="Render phantoms, train the demo segmenter and classifier, fit the classifier's Youden-J "
        "thresholds on validation phantoms, write both .safetensors files and print held-out Dice / AUC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, required=True, help="folder for demo-segmenter.safetensors and demo-classifier.safetensors"
    )
    p.add_argument("--n-train", type=int, default=6000, help="training phantoms (each in both textures)")
    p.add_argument("--n-val", type=int, default=800, help="validation phantoms (threshold fitting)")
    p.add_argument("--n-test", type=int, default=400, help="held-out test phantoms (scores printed)")
    p.add_argument("--seg-epochs", type=int, default=3, help="segmenter epochs (one epoch = both textures of every phantom)")
    p.add_argument("--cls-epochs", type=int, default=12, help="classifier epochs")
    p.add_argument("--batch", type=int, default=32, help="mini-batch size")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the phantoms and of the training")
    p.add_argument("--threads", type=int, default=default_threads(), help="torch threads and rendering processes")
    p.add_argument("--cache", type=Path, default=None, help="keep rendered phantoms here as .npz (reused on the next run)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # tiny activations otherwise slow CPU convolutions down several-fold
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    train = cached_set(args.cache, "train", args.n_train, args.threads, args.seed)
    val = cached_set(args.cache, "validate", args.n_val, args.threads, args.seed)
    test = cached_set(args.cache, "test", args.n_test, args.threads, args.seed)
    timings["render"] = time.perf_counter() - t0
    provenance = {
        "trained_by": "python -m xreal_bench.demo.train_evaluators "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "cache", "threads")),
        "torch": torch.__version__,
        "threads": str(args.threads),
    }

    t0 = time.perf_counter()
    save(
        train_segmenter(train, args),
        args.out / f"{SEGMENTER_ARTIFACT}.safetensors",
        {**provenance, "classes": "background,left_lung,right_lung,heart,aorta"},
    )
    timings["segmenter"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    classifier, youden = train_classifier(train, val, args)
    classifier_meta = {
        **provenance,
        "labels": json.dumps(list(DRAWN_FINDINGS)),
        "thresholds": json.dumps(youden.values),
        "thresholds_source": f"Youden-J, {youden.source}",
    }
    save(classifier, args.out / f"{CLASSIFIER_ARTIFACT}.safetensors", classifier_meta)
    timings["classifier"] = time.perf_counter() - t0

    weights, device = manager_for(args.out), torch.device("cpu")
    seg, cls = DemoSegmenter(weights=weights, device=device), DemoClassifier(weights=weights, device=device)
    print(f"held-out test phantoms (n={len(test)}, seeds SeedSequence([{args.seed}, {SPLITS['test']}, i])):")
    for style in STYLES:
        print(f"  Dice ({style} texture): {fmt(heldout_dice(seg, test, style))}")
    for style in STYLES:
        print(f"  AUC ({style} texture): {fmt(heldout_auc(cls, test, style))}")
    print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    for name in (SEGMENTER_ARTIFACT, CLASSIFIER_ARTIFACT):
        path = args.out / f"{name}.safetensors"
        print(f"{path}: {path.stat().st_size} bytes, sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
