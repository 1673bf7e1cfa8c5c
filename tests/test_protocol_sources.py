"""Every model adapter cites the source of every option default, and states its protocol without weights."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from xreal_bench.generators.base import GeneratorContext, option_sources
from xreal_bench.generators.registry import generator_class
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.registry import GENERATORS
from xreal_bench.types import Condition
from xreal_bench.weights import WeightsManager

#: The built-in generators that adapt a released model (they load weight files); generators other
#: test modules register are left out, whatever the order the tests run in.
ADAPTERS = sorted(name for name in GENERATORS.builtins if generator_class(name).artifacts)
REPOSITORY = re.compile(r"\b[\w.-]+/[\w.-]+\b")


def test_the_adapters_are_found():
    assert {"xreal", "controlnet", "cheff", "roentgen"} <= set(ADAPTERS)


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_option_default_has_a_source(name):
    sources = option_sources(generator_class(name).Options)
    assert sources, f"{name} has no options"
    missing = sorted(option for option, source in sources.items() if not source.strip())
    assert not missing, f"{name}: options without a cited source: {missing}"
    for option, source in sources.items():
        if source.startswith("not stated"):
            assert "chosen because" in source, f"{name}.{option}: {source!r} gives no reason"
        else:
            assert REPOSITORY.search(source) or "paper" in source.lower(), f"{name}.{option}: {source!r} names no origin"


def labels_of(*names: str) -> tuple[int, ...]:
    return tuple(int(name in names) for name in CHEXPERT_LABELS)


CASE = Condition(
    case_id="c1",
    sample_index=0,
    seed=1,
    labels=labels_of("Cardiomegaly", "Edema", "Support Devices"),
    prompt="Cardiomegaly, Edema",
    report="Mild edema.",
    image_path=Path("x.png"),
    impression="Mild edema.",
    report_text="Heart enlarged. Mild edema.",
)

EXPECTED_PROMPT = {
    "xreal": ("pathology_prompt", "'Cardiomegaly Edema Support Devices' (from labels)"),
    "controlnet": ("prompt", "'Cardiomegaly Edema Support Devices' (from labels)"),
    "cheff": ("prompt", "'Heart enlarged. Mild edema.' (from report_text)"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PROMPT))
def test_protocol_needs_no_weights_and_names_what_would_run(name, tmp_path):
    cls = generator_class(name)
    context = GeneratorContext(weights=WeightsManager(tmp_path), precision="fp16", device="cpu", square="stretch")
    options = cls.Options()
    steps = {step.key: step for step in cls.protocol(options, context, CASE)}
    assert [f.name for f in dataclasses.fields(cls.Options)] == list(steps)[: len(dataclasses.fields(cls.Options))]
    key, prompt = EXPECTED_PROMPT[name]
    assert steps[key].value == prompt and steps[key].source
    assert {"text_encoder", "scheduler", "precision", "preprocessing", "conditioning", "weights"} <= set(steps)
    assert str(tmp_path / "tokenizers/bert-base-uncased/vocab.txt") in steps["text_encoder"].value
    assert "max_length=150" in steps["text_encoder"].source
    assert steps["scheduler"].value.startswith("DDIM 100 of 1000 steps (t = 991, 981, ..., 1), eta 1.0")
    assert "linspace(sqrt(0.0015), sqrt(0.0295), 1000)**2" in steps["scheduler"].value
    assert steps["precision"].value.startswith("UNet/ControlNet fp32 (fp16 applies on CUDA only)")
    assert "256 px" in steps["preprocessing"].value
    assert steps["weights"].value.count("(MISSING)") == len(cls.required_artifacts(options))
    assert not list(tmp_path.iterdir())  # nothing read, converted or written
    unseen = {step.key: step for step in cls.protocol(options, context)}
    assert unseen[key].value == "(no case given)"


def test_changed_options_say_so():
    cls = generator_class("xreal")
    steps = {s.key: s for s in cls.protocol(cls.Options(no_finding="anatomy_image", steps=50), GeneratorContext())}
    assert steps["no_finding"].source == "set in the config (default 'pathology_pass')"
    assert steps["scheduler"].value.startswith("DDIM 50 of 1000 steps (t = 981, 961, ..., 1)")
    assert steps["conditioning"].value.endswith("no region -> the anatomy-pass image")
