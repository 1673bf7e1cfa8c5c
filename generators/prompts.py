"""Prompt rules: the text each model was trained on, built from a :class:`~xreal_bench.types.Condition`.

A rule is data (:class:`PromptRule`): a ``template`` whose ``{text}`` is the first non-empty
field of ``chain`` (the case's MaCheX report text, impression, findings, positive labels, or the prompt
a ``[dataset].prompts_file`` gives it), the
separator and label set used when the text is the labels, and the citation of the original
convention. :func:`build_prompt` applies a rule to one condition and returns a :class:`Prompt`:
the exact string, which field it came from, and a note for every fallback taken. Adapters select a
rule by name with their ``prompt_rule`` option (their default is the original's rule) and store
:meth:`Prompt.record` in the manifest line of each image.
"""

from __future__ import annotations

from dataclasses import dataclass

from xreal_bench.labels import CHEXPERT_LABELS, NON_PATHOLOGY_LABELS
from xreal_bench.types import Condition, Demographics

#: Condition fields a rule's ``chain`` may name.
TEXT_FIELDS = ("report_text", "impression", "findings", "labels", "prompt_text")
#: The CheXpert pathologies: every label but ``No Finding`` and ``Support Devices``.
PATHOLOGIES = tuple(name for name in CHEXPERT_LABELS if name not in NON_PATHOLOGY_LABELS)

XREAL_REPO = "BioMedIA-MBZUAI/XReal"
#: Which CSV columns XReal's ``label_cols`` are, worked out from the preprocessing notebook.
XREAL_LABEL_COLUMNS = (
    "the CSV is data_preprocessing/prerprocess_mimic_cxr.ipynb cells 6-9: metadata (12 columns) joined with the "
    "split on (subject_id, study_id, dicom_id) -> subject_id, study_id, dicom_id, 9 metadata columns, split "
    "(13 columns); joined with mimic-cxr-2.0.0-chexpert.csv on (subject_id, study_id) -> its 14 label columns "
    "(indices 13-26); then path_jpg, path (the 2 columns [:-2] drops). So label_cols = all 14 CheXpert labels, "
    "No Finding and Support Devices included; a label counts when its value == 1 (l.280), so -1 (uncertain) "
    "does not"
)


@dataclass(frozen=True)
class PromptRule:
    """How one model's prompt is built. ``template`` fields: ``{text}`` and, for demographic
    prompts, ``{age}``, ``{race}``, ``{sex}``."""

    name: str
    description: str
    source: str
    chain: tuple[str, ...]
    template: str = "{text}"
    label_separator: str = ", "
    label_set: tuple[str, ...] = PATHOLOGIES
    #: The Demographics field ``{age}`` takes: ``age`` (at the study) or ``anchor_age`` (MIMIC-IV's, as recorded).
    age_field: str = "age"

    def __post_init__(self) -> None:
        unknown = [f for f in self.chain if f not in TEXT_FIELDS]
        if unknown or not self.chain:
            raise ValueError(f"prompt rule {self.name!r}: chain {self.chain} (fields: {', '.join(TEXT_FIELDS)})")
        if self.age_field not in ("age", "anchor_age"):
            raise ValueError(f"prompt rule {self.name!r}: age_field {self.age_field!r} (age or anchor_age)")
        if "{text}" not in self.template:
            raise ValueError(f"prompt rule {self.name!r}: template {self.template!r} has no {{text}}")

    @property
    def demographic(self) -> bool:
        return any(f"{{{k}}}" in self.template for k in ("age", "race", "sex"))

    def labels_text(self, condition: Condition) -> str:
        """The condition's positive labels of ``label_set``, in CheXpert order, joined by ``label_separator``:
        those the label CSV states as 1.0 (``Condition.stated``), whatever the label policy made of the others."""
        wanted = set(self.label_set)
        values = condition.stated or condition.labels
        names = [name for name, value in zip(CHEXPERT_LABELS, values) if value == 1 and name in wanted]
        return self.label_separator.join(names)


@dataclass(frozen=True)
class Prompt:
    """The prompt of one sample: ``text`` exactly as tokenised, the ``field`` it came from
    (a :data:`TEXT_FIELDS` entry or ``"fallback_prompt"``), the ``rule``, and notes on fallbacks."""

    text: str
    field: str
    rule: str
    demographics: str = ""
    notes: tuple[str, ...] = ()

    def record(self) -> dict[str, str]:
        """What the manifest stores for this prompt."""
        out = {"prompt": self.text, "prompt_rule": self.rule, "prompt_field": self.field}
        if self.demographics:
            out["demographics"] = self.demographics
        return out


def field_text(condition: Condition, name: str, rule: PromptRule) -> str:
    if name == "labels":
        return rule.labels_text(condition)
    return " ".join(str(getattr(condition, name)).split())


def build_prompt(
    rule: PromptRule, condition: Condition, *, fallback: str, demographics_fallback: Demographics | None = None
) -> Prompt:
    """Apply ``rule`` to ``condition``: the first non-empty field of its chain, else ``fallback``.

    A demographic template takes the condition's demographics; where one of them is unknown the
    value of ``demographics_fallback`` is used, and the prompt's ``demographics`` says so.
    """
    notes: list[str] = []
    text, source = "", "fallback_prompt"
    for name in rule.chain:
        text = field_text(condition, name, rule)
        if text:
            source = name
            break
    if not text:
        text = " ".join(fallback.split())
    if source != rule.chain[0]:
        notes.append(f"prompt from {source} ({rule.chain[0]} empty)")
    demographics = ""
    if rule.demographic:
        values, demographics = demographic_values(condition.demographics, demographics_fallback, age_field=rule.age_field)
        if demographics != "mimic-iv":
            notes.append(f"demographics: {demographics}")
        text = rule.template.format(text=text, **values)
    else:
        text = rule.template.format(text=text)
    return Prompt(text=text, field=source, rule=rule.name, demographics=demographics, notes=tuple(notes))


def demographic_values(
    found: Demographics | None, fallback: Demographics | None, *, age_field: str = "age"
) -> tuple[dict[str, object], str]:
    """``({age, race, sex}, provenance)``: the case's values (``age`` from ``age_field``), each
    unknown one from ``fallback`` (its ``age``); provenance ``"mimic-iv"`` or ``"fallback (...)"``
    naming the values substituted."""
    found = found or Demographics()
    fallback = fallback or Demographics()
    values: dict[str, object] = {"age": getattr(found, age_field), "race": found.race, "sex": found.sex}
    substituted = []
    for key, value in list(values.items()):
        if value in (None, ""):
            values[key] = getattr(fallback, key)
            substituted.append(f"{key} {values[key]}")
    if found.source == "mimic-iv" and not substituted:
        return values, "mimic-iv"
    return values, "fallback (" + ", ".join(substituted or ["no MIMIC-IV record"]) + ")"


def rule_table(*rules: PromptRule) -> dict[str, PromptRule]:
    return {rule.name: rule for rule in rules}


#: Every named rule. Adapters' defaults cite the original; the others stay selectable.
PROMPT_RULES: dict[str, PromptRule] = rule_table(
    PromptRule(
        "machex",
        "MaCheX report text: everything after FINDINGS: (findings and impression), else after IMPRESSION:, else the "
        "whole report; no fallback to the labels ('' without a report, as MaCheX)",
        "saiboxx/machex machex.py MIMICParser._get_meta_data (l.404-428) (the `report` field Cheff trained on)",
        chain=("report_text",),
    ),
    PromptRule(
        "impression",
        "the report's IMPRESSION section (RoentGen v1)",
        "RoentGen v1 (huggingface.co/StanfordAIMI/roent-gen-v1-0; Chambon et al. 2022, arXiv:2211.12737): "
        "fine-tuned on MIMIC-CXR images with report text, prompted in the style of a report impression",
        chain=("impression", "labels"),
    ),
    PromptRule(
        "roentgen_v2",
        "'{age} year old {race} {sex}. {text}': the patient's age, race (capitals), sex (female/male), then the "
        "IMPRESSION (RoentGen v2)",
        "StanfordMIMI/RoentGen-v2 demo_data/demo_inference_prompts.csv:1-11 (prompt_variation = anchor_age, "
        "' year old ', race as WHITE/BLACK/ASIAN/HISPANIC, gender F/M as female/male, '. ', impression_short; "
        "how impression_short was derived from the IMPRESSION is unpublished, so the suite uses the IMPRESSION as it is)",
        chain=("impression", "labels"),
        template="{age} year old {race} {sex}. {text}",
        age_field="anchor_age",
    ),
    PromptRule(
        "roentgen_v2_age_at_study",
        "as roentgen_v2, with the age at the study (anchor_age + study year - anchor_year) instead of anchor_age",
        "not stated by the original (its prompts carry anchor_age); for users who want the age at the image",
        chain=("impression", "labels"),
        template="{age} year old {race} {sex}. {text}",
    ),
    PromptRule(
        "chexgenbench",
        "the prompt of CheXGenBench's test prompt file ([dataset].prompts_file, column annotated_prompt), as it is",
        "Raman1121/CheXGenBench tools/generate_data_common.py l.294 (prompt = annotated_prompt) and l.274-277 "
        "(passed to the pipeline unchanged); prompts from MIMIC_Splits/LLAVARAD_ANNOTATIONS_TEST.csv (README l.36-39)",
        chain=("prompt_text",),
    ),
    PromptRule("findings", "the report's FINDINGS section", "", chain=("findings", "labels")),
    PromptRule(
        "impression_or_findings",
        "IMPRESSION, else FINDINGS (the suite's earlier default)",
        "",
        chain=("impression", "findings", "labels"),
    ),
    PromptRule("labels", "the positive pathology names joined with ', ' (the suite's earlier default)", "", chain=("labels",)),
    PromptRule(
        "xreal_labels",
        "XReal's training text: every positive CheXpert label (No Finding and Support Devices included), "
        "in the CSV's column order, joined with a single space; '' when none is positive",
        f"{XREAL_REPO} xreal/data_utils.py DataVAE.get_text_labels (l.279-289) over label_cols = "
        f"annotations_df.columns[13:-2] (l.209); {XREAL_LABEL_COLUMNS}. Caveat: the released backbone config "
        "configs/xreal-diff-t2i.yml names cond_stage_key: report (l.11), a key DataVAE fills with '' (l.343-346), and "
        "scripts/train_t2i_backbone.py (l.157-169) passes DataVAE arguments it does not take, so that script does not "
        "run as released; the label text follows DataVAE's text_labels (the ControlNet's training key) and the "
        "paper's label prompts",
        chain=("labels",),
        label_separator=" ",
        label_set=CHEXPERT_LABELS,
    ),
    PromptRule(
        "controlnet_labels",
        "the ControlNet baseline's training text: XReal's label text (all 14 CheXpert labels, Support Devices "
        "included, joined with a single space)",
        f"{XREAL_REPO} cnet/train_cnet.py DataModuleFromConfig (l.187-198: DataVAE(controlnet=True, "
        "return_text_labels=True)) -> xreal/data_utils.py DataVAE.diffusion_ft (l.323-331) -> get_text_labels "
        f"(l.279-289); configs/xreal-diff-t2i_cnet.yml cond_stage_key: text_labels (l.14); {XREAL_LABEL_COLUMNS}",
        chain=("labels",),
        label_separator=" ",
        label_set=CHEXPERT_LABELS,
    ),
)


def prompt_rule(name: str) -> PromptRule:
    """The rule called ``name``; ``KeyError`` naming the known rules."""
    try:
        return PROMPT_RULES[name]
    except KeyError:
        raise KeyError(f"unknown prompt rule {name!r}; known: {', '.join(PROMPT_RULES)}") from None
