"""Random-weight files in the exact release layouts, for tests and timing benchmarks ONLY.

Loaders never call this: a missing weights file is always an error. Tests use it to exercise
the real loading paths (file names, pickle/state-dict formats, key prefixes) offline, and
``benchmarks/eval_throughput.py --suite standard`` to time the real architectures.
"""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import torch

from xreal_bench.weights import Artifact, WeightsManager


def unpublished_release_artifacts() -> dict[str, Artifact]:
    """The release artifacts without their published size/hash: random files can never match them."""
    from xreal_bench.metrics.evaluators.inception import ARTIFACT
    from xreal_bench.metrics.evaluators.xrv import DENSENETS, PSPNET

    return {a.name: replace(a, sha256=None, sha256_prefix=None, size=None) for a in (ARTIFACT, PSPNET, *DENSENETS.values())}


def write_random_release_files(manager: WeightsManager, seed: int = 0) -> None:
    """Write torchxrayvision DenseNet (mimic_ch), PSPNet and torch-fidelity Inception files and the encoders'
    snapshots (:func:`write_random_snapshots`), and make ``manager`` accept them
    (:func:`unpublished_release_artifacts`: they load as "unverified")."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from xreal_bench.metrics.evaluators.xrv import import_xrv

    manager.overrides.update(unpublished_release_artifacts())

    xrv = import_xrv()
    torch.manual_seed(seed)
    # torchxrayvision release files are pickled DenseNet modules (its loader calls .modules()/.state_dict()).
    dense = manager.path("xrv-densenet-mimic_ch")
    dense.parent.mkdir(parents=True, exist_ok=True)
    torch.save(xrv.models.DenseNet(num_classes=18, in_channels=1), dense)
    # ChestX-Det PSPNet: a DataParallel state dict ("module." prefix), loaded with weights_only=True.
    net = xrv.baseline_models.chestx_det.ptsemseg.pspnet.pspnet(14)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, manager.path("xrv-pspnet"))
    # torch-fidelity Inception: a plain state dict of FeatureExtractorInceptionV3.
    with (
        mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}),
        mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict"),
    ):
        inception = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    manager.path("inception-fid").parent.mkdir(parents=True, exist_ok=True)
    torch.save(inception.state_dict(), manager.path("inception-fid"))
    write_random_snapshots(manager, seed=seed)


#: ImageNet normalisation (facebook/dinov2-large's processor) and RAD-DINO's (microsoft/rad-dino's processor).
IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
RAD_DINO = {"image_mean": [0.5307] * 3, "image_std": [0.2583] * 3}


def write_random_snapshots(manager: WeightsManager, seed: int = 0) -> None:
    """Hugging Face snapshots of DINOv2 ViT-L/14, CLIP ViT-L/14-336 (vision tower at full size, a tiny text tower:
    the loader ignores it) and RAD-DINO ViT-B/14 at their released sizes, with random weights (timing only)."""
    from transformers import BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    vit_large = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
    vit_base = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
    for name, widths, size, crop, norm in (
        ("dinov2-vitl14", vit_large, 256, 224, IMAGENET),
        ("rad-dino", vit_base, 518, 518, RAD_DINO),
    ):
        folder = manager.path(name)
        Dinov2Model(Dinov2Config(**widths, image_size=518, patch_size=14)).save_pretrained(folder)
        BitImageProcessor(size={"shortest_edge": size}, crop_size={"height": crop, "width": crop}, **norm).save_pretrained(folder)
    tiny_text = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    vision = {**vit_large, "image_size": 336, "patch_size": 14, "projection_dim": 768}
    clip = manager.path("clip-vitl14-336")
    CLIPModel(CLIPConfig(text_config=tiny_text, vision_config=vision, projection_dim=768)).save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(clip)
