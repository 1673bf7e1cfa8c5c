"""``xreal-bench generators list``: the types, then the configured generators with the weights their options need."""

from __future__ import annotations

from pathlib import Path

from xreal_bench.cli import main

CHEXGENBENCH = Path(__file__).resolve().parents[1] / "configs" / "chexgenbench.toml"


def listed(capsys, *args: str) -> list[str]:
    assert main(["generators", "list", *args]) == 0
    return capsys.readouterr().out.splitlines()


def entry(lines: list[str], name: str) -> list[str]:
    start = lines.index(next(line for line in lines if line.startswith(f"{name}: ")))
    return lines[start : start + 3]


def test_configured_generators_show_the_weights_their_options_need(tmp_path, capsys):
    weights = tmp_path / "weights"
    lines = listed(capsys, "--config", str(CHEXGENBENCH), "--weights-dir", str(weights))
    configured = lines[lines.index(next(line for line in lines if line.startswith("configured generators"))) :]
    assert configured[0].startswith(f"configured generators ({CHEXGENBENCH};")
    assert entry(configured, "cgb-sd-v3-5") == [
        "cgb-sd-v3-5: type diffusers",
        "    inputs:  labels, text",
        "    weights: sd-3-5-medium (missing), chexgenbench-sd-v3-5-lora (missing)",
    ]
    assert entry(configured, "cgb-flux")[0] == "cgb-flux: type diffusers (enabled = false: a run skips it)"
    assert entry(configured, "real")[2] == "    weights: none"
    # the types' section keeps the type's own (option-independent) declaration
    assert entry(lines, "diffusers")[2] == "    weights: none"

    lora = weights / "chexgenbench" / "CheXGenBench-Models-SDV3-5" / "sd3-5_medium_lora.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"0")
    lines = listed(capsys, "--config", str(CHEXGENBENCH), "--weights-dir", str(weights))
    configured = lines[lines.index(next(line for line in lines if line.startswith("configured generators"))) :]
    assert entry(configured, "cgb-sd-v3-5")[2] == "    weights: sd-3-5-medium (missing), chexgenbench-sd-v3-5-lora (present)"


def test_generator_types_are_listed_with_inputs_and_weights(tmp_path, capsys):
    lines = listed(capsys, "--weights-dir", str(tmp_path))
    assert lines[0] == f"generator types (weights folder {tmp_path}):"
    assert entry(lines, "radedit")[1:] == [
        "    inputs:  labels, text",
        "    weights: radedit-unet (missing), sdxl-vae (missing), biovil-t (missing)",
    ]
    assert entry(lines, "chexgen")[1] == "    inputs:  labels, pathology, text"
