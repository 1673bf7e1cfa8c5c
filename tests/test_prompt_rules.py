"""Prompt rules as data (generators/prompts.py) and the per-image model inputs in GeneratorOutput."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xreal_bench.generators.base import GeneratorOutput
from xreal_bench.generators.prompts import PROMPT_RULES, PromptRule, build_prompt, prompt_rule
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition, Demographics


def condition(positives=(), **texts) -> Condition:
    labels = tuple(int(name in positives) for name in CHEXPERT_LABELS)
    return Condition("c1", 0, 7, labels, "", "", Path("x.jpg"), **texts)


def test_a_rule_takes_the_first_non_empty_field_and_notes_each_fallback():
    rule = PromptRule("t", "test", "test", chain=("impression", "findings", "labels"), label_separator=" ")
    both = condition(("Edema", "Cardiomegaly", "Support Devices"), impression="  Mild\n edema. ", findings="Lungs clear.")
    assert build_prompt(rule, both, fallback="none") == build_prompt(rule, both, fallback="other")
    first = build_prompt(rule, both, fallback="none")
    assert (first.text, first.field, first.notes) == ("Mild edema.", "impression", ())
    findings = build_prompt(rule, condition(("Edema",), findings="Lungs clear."), fallback="none")
    assert (findings.text, findings.field, findings.notes) == (
        "Lungs clear.",
        "findings",
        ("prompt from findings (impression empty)",),
    )
    labels = build_prompt(rule, condition(("Edema", "Cardiomegaly", "Support Devices")), fallback="none")
    assert labels.text == "Cardiomegaly Edema"  # CheXpert order, the rule's separator, pathologies only
    empty = build_prompt(rule, condition(), fallback="  No   Finding ")
    assert (empty.text, empty.field) == ("No Finding", "fallback_prompt")
    assert empty.record() == {"prompt": "No Finding", "prompt_rule": "t", "prompt_field": "fallback_prompt"}


def test_the_label_set_decides_which_positives_are_named():
    rule = PromptRule("t", "test", "test", chain=("labels",), label_set=("Support Devices", "Edema"))
    assert build_prompt(rule, condition(("Edema", "Support Devices", "Pneumonia")), fallback="").text == "Edema, Support Devices"


def test_demographic_templates_use_the_case_and_record_every_substituted_value():
    rule = PromptRule("v2", "test", "test", chain=("impression",), template="{age} year old {race} {sex}. {text}")
    known = Demographics(age=71, sex="male", race="black", source="mimic-iv")
    fallback = Demographics(age=65, sex="female", race="white")
    full = build_prompt(
        rule, condition(impression="Small effusion.", demographics=known), fallback="", demographics_fallback=fallback
    )
    assert (full.text, full.demographics, full.notes) == ("71 year old black male. Small effusion.", "mimic-iv", ())
    partial = Demographics(age=71, sex="male", race="", source="mimic-iv")
    p = build_prompt(rule, condition(impression="x", demographics=partial), fallback="", demographics_fallback=fallback)
    assert p.text == "71 year old white male. x" and p.demographics == "fallback (race white)"
    none = build_prompt(rule, condition(impression="x"), fallback="", demographics_fallback=fallback)
    assert none.text == "65 year old white female. x"
    assert none.demographics == "fallback (age 65, race white, sex female)"
    assert none.record()["demographics"] == none.demographics


def test_rules_refuse_unknown_fields_and_templates_without_text():
    with pytest.raises(ValueError, match="chain"):
        PromptRule("bad", "", "", chain=("report",))
    with pytest.raises(ValueError, match="no {text}"):
        PromptRule("bad", "", "", chain=("labels",), template="{age}")
    with pytest.raises(KeyError, match="known: "):
        prompt_rule("nope")
    assert all(prompt_rule(name) is rule for name, rule in PROMPT_RULES.items())


def test_generator_output_inputs_are_one_mapping_per_image():
    images = [np.zeros((8, 8), np.float32)] * 2
    out = GeneratorOutput(images, inputs=[{"prompt": "a"}, {"prompt": "b"}])
    assert out.inputs == ({"prompt": "a"}, {"prompt": "b"})
    with pytest.raises(ValueError, match="1 inputs for 2 images"):
        GeneratorOutput(images, inputs=[{"prompt": "a"}])


def test_label_prompts_read_the_labels_the_csv_states_not_the_policys():
    rule = prompt_rule("labels")
    policy_made = condition(("Edema", "Pneumonia"))  # labels after a policy counting uncertain Pneumonia as 1
    stated = tuple(int(name == "Edema") for name in CHEXPERT_LABELS)
    as_stated = Condition("c1", 0, 7, policy_made.labels, "", "", Path("x.jpg"), stated=stated)
    assert build_prompt(rule, as_stated, fallback="").text == "Edema"
    assert build_prompt(rule, policy_made, fallback="").text == "Edema, Pneumonia"  # no stated labels: the labels
