"""Random-weight files in the exact release layouts, for tests and timing benchmarks ONLY.

Loaders never call this: a missing weights file is always an error. Tests use it to exercise
the real loading paths (file names, pickle/state-dict formats, key prefixes) offline, and
``benchmarks/eval_throughput.py --suite standard`` to time the real architectures.
"""

from __future__ import annotations

from unittest import mock

import torch

from xreal_bench.weights import WeightsManager


def write_random_release_files(manager: WeightsManager, seed: int = 0) -> None:
    """Write torchxrayvision DenseNet (mimic_ch), PSPNet and torch-fidelity Inception files."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from xreal_bench.metrics.evaluators.xrv import import_xrv

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
