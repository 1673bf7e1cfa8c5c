"""The whole model zoo through the CLI, as a user runs it: tiny random weights of three diffusers families
(SD 1.5, PixArt-Σ and Flux snapshots at CheXGenBench's artifact paths), ChexGen (the default 512-impression release
and the mask-controlled one) and RadEdit, with the real images, on the demo's synthetic data set.

``xreal-bench run`` must generate every generator's images and evaluate them (FID on the demo features, MS-SSIM);
``generators show`` must print each one's protocol and ``generators list`` each type's weights with their status.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tiny_zoo import DIFFUSERS_FAMILIES, write_zoo

from xreal_bench.cli import main
from xreal_bench.demo.command import demo_tables
from xreal_bench.weights import WeightsManager

RESOLUTION = 192  # run.resolution (MS-SSIM's five scales need more than 160 px)
METRICS = ["fid", "ms_ssim"]
#: Each generator with the artifacts its options load (the identity and results.json name exactly these).
LOADED = {
    **{name: (artifact,) for name, (artifact, _) in DIFFUSERS_FAMILIES.items()},
    "chexgen": ("chexgen-512-impression", "t5-v1_1-xxl", "sd-vae-ft-ema"),
    "chexgen-mask": ("chexgen-mask", "t5-v1_1-xxl", "sd-vae-ft-ema"),
    "radedit": ("radedit-unet", "sdxl-vae", "biovil-t"),
}
#: One concrete line of each generator's protocol as ``generators show`` prints it.
PROTOCOL_LINES = {
    "sd": "  family = Stable Diffusion 1.x/2.x (StableDiffusionPipeline from {weights}/chexgenbench/CheXGenBench-Models-SDV-1-5/",
    "pixart": "  pipeline arguments = clean_caption=False, use_resolution_binning=False",
    "flux": "  tokens = tokenizer 77, tokenizer_2 512 (longer prompts truncated; cut counted)",
    "chexgen": "  checkpoint = chexgen/finetuned_impression_512.pth (key 'state_dict_ema', 'module.' stripped)",
    "chexgen-mask": "  guidance = none (conditional pass only)",
    "radedit": "  scheduler = DDIMScheduler(beta_schedule='linear', clip_sample=False, prediction_type='epsilon', "
    "timestep_spacing='trailing', steps_offset=1)",
}


def toml_text(tables: dict, prefix: str = "") -> str:
    """``tables`` as TOML (strings, numbers, booleans and lists of them; JSON spells those as TOML does)."""
    lines = [f"[{prefix}]"] if prefix else []
    lines += [f"{key} = {json.dumps(value)}" for key, value in tables.items() if not isinstance(value, dict)]
    text = "\n".join(lines) + "\n"
    for key, value in tables.items():
        if isinstance(value, dict):
            text += toml_text(value, f"{prefix}.{key}" if prefix else key)
    return text


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The demo config with the zoo as its generators, run once through ``xreal-bench run``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("zoo")
    weights = root / "weights"
    tables = demo_tables(str(root / "run"))
    tables["dataset"]["synthetic"] = {"n_subjects": 8, "image_size": RESOLUTION}  # four test cases
    tables["generators"] = {"real": {}, **write_zoo(weights)}
    tables["metrics"].update(enabled=METRICS, bootstrap=10, fid_bootstrap=0, min_subset_n=2, subgroups=False)
    tables["run"].update(resolution=RESOLUTION, samples_per_condition=1, batch_size=4, device="cpu")
    tables["weights"] = {"dir": str(weights)}
    config = root / "bench.toml"
    config.write_text(toml_text(tables))
    assert main(["run", "--config", str(config), "--quiet"]) == 0
    yield config, root / "run", weights
    torch.set_num_threads(threads)


def cases(out: Path) -> list[str]:
    return [json.loads(line)["case_id"] for line in (out / "cases.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", list(LOADED))
def test_each_generator_wrote_its_images_with_their_provenance(zoo, name):
    _, out, weights = zoo
    planned = cases(out)
    assert len(planned) == 4
    lines = [json.loads(line) for line in (out / name / "manifest.jsonl").read_text().splitlines()]
    assert sorted(x["case_id"] for x in lines) == sorted(planned)
    assert {x["status"] for x in lines} == {"ok"} and {x["generator"] for x in lines} == {name}
    for line in lines:
        pixels = np.asarray(Image.open(out / name / line["file"]))
        assert pixels.shape == (RESOLUTION, RESOLUTION) and pixels.dtype == np.uint8
        assert pixels.std() > 1.0  # a random network's image, not a constant
        assert line["condition"]["inputs"]["prompt"] == line["condition"]["report"]  # the impression, as each protocol says
    inputs = lines[0]["condition"]["inputs"]
    if name in DIFFUSERS_FAMILIES:
        assert inputs["pipeline"] == DIFFUSERS_FAMILIES[name][1]
    if name.startswith("chexgen"):
        assert inputs["checkpoint"] == ("mask" if name == "chexgen-mask" else "512-impression")
    if name == "chexgen-mask":  # the box CSV's boxes reached the mask-controlled checkpoint
        assert {x["condition"]["mask_source"] for x in lines} == {"none", "boxes_csv"}
    manager = WeightsManager(weights)
    recorded = json.loads((out / name / "identity.json").read_text())["fields"]
    assert {k.removeprefix("weights."): v for k, v in recorded.items() if k.startswith("weights.")} == {
        artifact: manager.file_hash(artifact) for artifact in LOADED[name]
    }


def test_every_generator_is_scored_in_the_results(zoo):
    _, out, _ = zoo
    results = pd.read_csv(out / "results.csv")
    overall = results[results.subset == "all"].set_index(["generator", "metric"])
    for name in LOADED:
        for metric in METRICS:
            row = overall.loc[(name, metric)]
            assert math.isfinite(row.value) and row.failed == 0 and row.missing == 0, (name, metric)
        assert overall.loc[(name, "fid"), "n"] == 4 and overall.loc[(name, "ms_ssim"), "n"] == 4
        assert 0.0 <= overall.loc[(name, "ms_ssim"), "value"] < 1.0
    assert overall.loc[("real", "ms_ssim"), "value"] == pytest.approx(1.0)
    provenance = json.loads((out / "results.json").read_text())
    for name, artifacts in LOADED.items():
        assert provenance["coverage"]["sources"][name]["coverage"] == 1.0
        statuses = provenance["generators"][name]["weights"]
        assert sorted(statuses) == sorted(artifacts)
        assert {s["status"] for s in statuses.values()} == {"unverified (no published hash)"}
    board = (out / "leaderboard.md").read_text()
    for name, artifacts in LOADED.items():
        assert f"| {name} | 4 | 0 | 0 | 1.000 |" in board
        assert all(f"generator `{name}`: `{artifact}` (sha256 " in board for artifact in artifacts)
    assert "generator `chexgen`: `chexgen-256`" not in board  # a checkpoint the options do not load is not provenance


@pytest.mark.parametrize("name", list(LOADED))
def test_generators_show_prints_each_protocol(zoo, capsys, name):
    config, _, weights = zoo
    assert main(["generators", "show", name, "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"generator {name!r} (type {'diffusers' if name in DIFFUSERS_FAMILIES else name.split('-')[0]!r})")
    assert PROTOCOL_LINES[name].format(weights=weights) in printed, printed
    assert "  steps = 2\n      set in the config" in printed
    for artifact in LOADED[name]:
        assert f"  present  {artifact}  {WeightsManager(weights).path(artifact)}" in printed


def test_generators_list_shows_the_zoo_types_with_weights_status(zoo, capsys):
    config, _, _ = zoo
    assert main(["generators", "list", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "diffusers: any diffusers text-to-image snapshot" in printed
    assert (
        "    weights: chexgen-256 (present), chexgen-512-impression (present), chexgen-512-demographics (missing), "
        "chexgen-mask (present), t5-v1_1-xxl (present), sd-vae-ft-ema (present)\n"
    ) in printed
    assert "    weights: radedit-unet (present), sdxl-vae (present), biovil-t (present)\n" in printed


def test_resume_accepts_checkpoints_not_loaded_now_but_not_a_loaded_one_it_never_recorded(zoo, tmp_path, capsys):
    """A folder recording artifacts its options do not load (another ChexGen checkpoint) holds the same images and
    resumes; a loaded artifact the folder never recorded is a difference: its images may come from other weights."""
    config, out, weights = zoo
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    identity = copy / "chexgen" / "identity.json"
    record = json.loads(identity.read_text())
    record["fields"] |= {"weights.chexgen-256": "0" * 64, "weights.chexgen-512-demographics": "absent"}
    identity.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["generate", "--config", str(config), "--out", str(copy), "--generators", "chexgen", "--quiet"]) == 0
    assert "chexgen: 0 generated, 4 already done, 0 failed of 4" in capsys.readouterr().out
    t5 = record["fields"].pop("weights.t5-v1_1-xxl")
    assert t5 == WeightsManager(weights).file_hash("t5-v1_1-xxl")
    identity.write_text(json.dumps(record))
    assert main(["generate", "--config", str(config), "--out", str(copy), "--generators", "chexgen", "--quiet"]) == 2
    assert f'weights.t5-v1_1-xxl: (not recorded) -> "{t5}"' in capsys.readouterr().err
