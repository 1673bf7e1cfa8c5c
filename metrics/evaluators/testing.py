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
    """Write torchxrayvision DenseNet (mimic_ch), PSPNet and torch-fidelity Inception files, and make
    ``manager`` accept them (:func:`unpublished_release_artifacts`: they load as "unverified")."""
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
