"""Typed configuration loaded from ``bench.toml``.

Every section is a dataclass whose defaults are the documented defaults. :func:`load_config`
reads the file, applies ``--set key.path=value`` overrides, and validates everything —
unknown keys, wrong types, impossible values and generator options — before any work starts.
Relative paths are relative to the current working directory.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import re
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from xreal_bench.imaging import Geometry
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.names import NAME_RULE, RESERVED_GENERATOR_NAMES, is_valid_name
from xreal_bench.registry import GENERATORS, RegistryError, declared, metric_table
from xreal_bench.validation import ConfigError, build, describe, join, require, to_dict, toml_key

LabelValue = Literal[0, 1, "ignore"]

#: Upper bound of ``run.resolution``: above MIMIC-CXR-JPG's native size (about 2500-3000 px on
#: the long side), so a larger value only upsamples, and a typo (25600) would allocate gigabytes
#: per batch before failing.
MAX_RESOLUTION = 4096
#: Upper bound of ``conditioning.resolution`` (label maps, boxes and masks handed to generators):
#: every supported generator takes 512 px or less, so 2048 leaves room and refuses typos alike.
MAX_CONDITIONING_RESOLUTION = 2048


@dataclass
class LabelPolicy:
    """How CheXpert values map to labels: 1.0 is always positive and 0.0 negative."""

    uncertain: LabelValue = 0  # -1.0 in the CSV
    blank: LabelValue = 0  # empty cell
    missing_study: LabelValue = 0  # study absent from the label CSV

    def describe(self) -> dict[str, Any]:
        return {"1.0": 1, "0.0": 0, "-1.0": self.uncertain, "blank": self.blank, "missing_study": self.missing_study}


@dataclass
class SyntheticConfig:
    """The synthetic demo set (written in the MIMIC-CXR-JPG layout)."""

    n_subjects: int = 120
    seed: int = 0
    image_size: int = 256

    def validate(self) -> None:
        require(self.n_subjects >= 4, "n_subjects", f"expected at least 4, got {self.n_subjects}")
        require(self.seed >= 0, "seed", f"expected >= 0, got {self.seed}")
        require(64 <= self.image_size <= 2048, "image_size", f"expected 64..2048, got {self.image_size}")


@dataclass
class DatasetConfig:
    kind: Literal["mimic", "synthetic"] = "synthetic"
    root: str = "runs/demo/data"
    reports_root: str = ""  # MIMIC-CXR reports tree; "" looks next to the images under root/files
    demographics: str = ""  # MIMIC-IV root holding hosp/patients.csv(.gz) and hosp/admissions.csv(.gz); "" = none
    split: Literal["train", "validate", "test"] = "test"
    train_split: Literal["train", "validate", "test"] = "train"  # the memorization audit's training images
    views: list[str] = field(default_factory=lambda: ["AP", "PA"])
    labeler: Literal["chexpert", "negbio"] = "chexpert"
    label_policy: LabelPolicy = field(default_factory=LabelPolicy)
    square: Literal["crop", "pad", "stretch"] = "crop"  # xreal_bench.imaging: centre crop, black padding, or aspect not kept
    intensity: Literal["none", "minmax"] = "none"  # "minmax": each image stretched to its own min..max (XReal's training)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    #: An external prompt file fixing the image set and each image's prompt (xreal_bench.data.chexgenbench); "" none.
    prompts_file: str = ""
    prompts_format: Literal["chexgenbench"] = "chexgenbench"
    #: "file": labels (and per-label subsets) from the prompt file under label_policy; "mimic": the label CSV's.
    prompts_labels: Literal["file", "mimic"] = "file"

    def validate(self) -> None:
        require(bool(self.root), "root", "expected the dataset root folder")
        require(bool(self.views), "views", "expected at least one view (e.g. ['AP', 'PA'])")

    @property
    def geometry(self) -> Geometry:
        """``square`` and ``intensity`` as the one value the image path takes."""
        return Geometry(self.square, self.intensity)


@dataclass
class ConditioningConfig:
    resolution: int = 256
    anatomy: Literal["folder", "pspnet", "none"] = "folder"
    anatomy_dir: str = ""  # "folder": <case_id>.png label maps (0..4, or x64 as XReal's examples)
    boxes_csv: str = ""
    boxes_format: Literal["ms-cxr", "vindr"] = "ms-cxr"
    box_fallback: Literal["anatomy", "random", "none"] = "anatomy"
    report_section: Literal["impression", "findings"] = "impression"
    prompt_separator: str = ", "
    cache_dir: str = ""  # "" -> <run.out>/.cache

    def validate(self) -> None:
        top = MAX_CONDITIONING_RESOLUTION
        require(64 <= self.resolution <= top, "resolution", f"expected 64..{top}, got {self.resolution}")


@dataclass
class GeneratorConfig:
    """One ``[generators.<name>]`` table: common keys; the rest are the generator's own options."""

    type: str
    enabled: bool = True
    batch_size: int = 0  # 0 -> run.batch_size
    options: dict[str, Any] = field(default_factory=dict)


def default_metrics() -> list[str]:
    return metric_table().default_enabled()


@dataclass
class MetricsConfig:
    enabled: list[str] = field(default_factory=default_metrics)  # names of the metric table's selectable metrics
    evaluators: Literal["standard", "demo"] = "standard"  # the suite: real evaluators, or the demo's own
    features: str = ""  # FID feature extractor; "" = the suite's (standard: inception)
    domain_features: str = ""  # fid_xrv feature extractor; "" = the suite's (standard: xrv-densenet-features)
    segmenter: str = ""  # "" = the suite's (standard: xrv-pspnet)
    classifier: str = ""  # "" = the suite's (standard: xrv-densenet-mimic_ch)
    dinov2: str = ""  # fd_dinov2 encoder; "" = the suite's (standard: dinov2-vitl14)
    raddino: str = ""  # fd_raddino encoder; "" = the suite's (standard: rad-dino)
    clip: str = ""  # cmmd encoder; "" = the suite's (standard: clip-vitl14-336)
    # The feature role PRDC, Vendi and the memorization audit use (DINOv2 by default, Stein et al. 2023).
    embedding: Literal["features", "domain_features", "dinov2", "raddino", "clip"] = "dinov2"
    prdc_k: int = 5  # k of precision/recall/density/coverage (Naeem et al. 2020)
    memorization_quantile: float = 0.999  # a generated image counts as memorized above this quantile of the null
    memorization_top_k: int = 5  # nearest training images kept per generated image (pixel re-check, pairs grid)
    memorization_train_n: int = 0  # training images searched: 0 = the whole dataset.train_split, else a seeded subsample
    subgroups: bool = True  # rows per sex, age band and race (when the cases have demographics) with fairness gaps
    age_edges: list[int] = field(default_factory=lambda: [0, 40, 60, 80])  # age bands [0,40), [40,60), [60,80), 80+
    # Which lung torchxrayvision PSPNet's "Left Lung" output covers (UNCERTAIN upstream): the
    # patient's left (radiological convention, default) or the image's left. Dice is unaffected.
    pspnet_left_lung: Literal["patient-left", "image-left"] = "patient-left"
    label_set: list[str] = field(default_factory=lambda: ["classifier"])  # or ["xreal"] or label names
    thresholds: Literal["calibrated", "youden", "f1", "fixed"] = "calibrated"
    threshold_split: Literal["train", "validate"] = "validate"
    fixed_threshold: float = 0.5
    f1_zero_division: Literal[0, 1] = 0
    dice_reference: Literal["real", "input"] = "real"
    bootstrap: int = 1000  # resamples for every CI except the feature distances'
    fid_bootstrap: int = 0  # resamples for FID / FID-XRV / KID CIs and rank intervals (FID costly at d=2048; 0 = none)
    bootstrap_seed: int = 0  # seed of every CI's case resamples: runs with other run.seed values resample the same cases
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    confidence: float = 0.95
    subsets: bool = True
    min_subset_n: int = 10
    min_coverage: float = 0.95  # a generator scored on fewer than this share of the cases is marked in every report
    batch_size: int = 32
    num_workers: int = 2
    cache_dir: str = ""  # real-side evaluator outputs; "" -> <run.out>/.cache

    def validate(self) -> None:
        names = metric_table().selectable_names()
        for i, name in enumerate(self.enabled):
            require(name in names, f"enabled[{i}]", f"expected one of {', '.join(map(repr, names))}, got {name!r}")
        require(self.bootstrap >= 0, "bootstrap", f"expected >= 0 resamples, got {self.bootstrap}")
        require(self.fid_bootstrap >= 0, "fid_bootstrap", f"expected >= 0 resamples, got {self.fid_bootstrap}")
        require(self.bootstrap_seed >= 0, "bootstrap_seed", f"expected >= 0, got {self.bootstrap_seed}")
        require(self.kid_subsets >= 1, "kid_subsets", f"expected >= 1, got {self.kid_subsets}")
        require(self.kid_subset_size >= 2, "kid_subset_size", f"expected >= 2, got {self.kid_subset_size}")
        require(0.5 < self.confidence < 1.0, "confidence", f"expected a level in (0.5, 1), got {self.confidence}")
        require(0.0 < self.fixed_threshold < 1.0, "fixed_threshold", f"expected (0, 1), got {self.fixed_threshold}")
        require(self.batch_size >= 1, "batch_size", f"expected a positive integer, got {self.batch_size}")
        require(self.num_workers >= 0, "num_workers", f"expected >= 0, got {self.num_workers}")
        require(self.min_subset_n >= 2, "min_subset_n", f"expected >= 2, got {self.min_subset_n}")
        require(self.prdc_k >= 1, "prdc_k", f"expected >= 1, got {self.prdc_k}")
        require(
            0.5 <= self.memorization_quantile < 1.0,
            "memorization_quantile",
            f"expected a quantile in [0.5, 1), got {self.memorization_quantile}",
        )
        require(self.memorization_top_k >= 1, "memorization_top_k", f"expected >= 1, got {self.memorization_top_k}")
        require(
            self.memorization_train_n >= 0, "memorization_train_n", f"expected >= 0 (0 = all), got {self.memorization_train_n}"
        )
        edges = self.age_edges
        require(
            len(edges) >= 1 and all(a < b for a, b in zip(edges, edges[1:])) and edges[0] >= 0,
            "age_edges",
            f"expected increasing ages >= 0, e.g. [0, 40, 60, 80], got {edges}",
        )
        require(
            0.0 < self.min_coverage <= 1.0, "min_coverage", f"expected a share of the cases in (0, 1], got {self.min_coverage}"
        )
        for i, name in enumerate(self.label_set):
            require(
                name in ("classifier", "xreal") or name in CHEXPERT_LABELS,
                f"label_set[{i}]",
                f"expected 'classifier', 'xreal' or a CheXpert label ({', '.join(CHEXPERT_LABELS)}), got {name!r}",
            )


@dataclass
class RunConfig:
    out: str = "runs/demo"
    seed: int = 0
    samples_per_condition: int = 1
    batch_size: int = 8
    num_cases: int = 0  # 0 = every case; otherwise a seeded subsample stratified by pathology
    device: str = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    resolution: int = 256
    bit_depth: Literal[8, 16] = 8

    def validate(self) -> None:
        require(bool(self.out), "out", "expected an output folder")
        require(self.samples_per_condition >= 1, "samples_per_condition", f"expected >= 1, got {self.samples_per_condition}")
        require(self.batch_size >= 1, "batch_size", f"expected a positive integer, got {self.batch_size}")
        require(self.num_cases >= 0, "num_cases", f"expected >= 0 (0 = all), got {self.num_cases}")
        require(self.seed >= 0, "seed", f"expected >= 0, got {self.seed}")
        require(
            161 <= self.resolution <= MAX_RESOLUTION,
            "resolution",
            f"expected 161..{MAX_RESOLUTION} (MS-SSIM's five scales need more than 160 px; above {MAX_RESOLUTION} "
            f"exceeds MIMIC-CXR's native size), got {self.resolution}",
        )
        ok = self.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:[0-9]+", self.device) is not None
        require(ok, "device", f"expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")


@dataclass
class ReportConfig:
    formats: list[Literal["md", "csv", "tex"]] = field(default_factory=lambda: ["md", "csv", "tex"])
    figures: bool = True
    decimals: int = 3

    def validate(self) -> None:
        require(0 <= self.decimals <= 8, "decimals", f"expected 0..8, got {self.decimals}")


@dataclass
class StudyConfig:
    """A blinded reader study built from run directories (``xreal-bench study create``)."""

    title: str = "Chest X-ray reader study"
    n_cases: int = 12
    generators: list[str] = field(default_factory=list)  # [] = every generator in the run
    readers: list[str] = field(default_factory=lambda: ["reader1", "reader2"])
    criteria: list[str] = field(default_factory=lambda: ["anatomy_realism", "pathology_realism", "image_quality"])
    # Question and the five anchors (scores 1..5) of a criterion; built-in for the three defaults.
    criterion_questions: dict[str, str] = field(default_factory=dict)
    criterion_anchors: dict[str, list[str]] = field(default_factory=dict)
    calibration_items: int = 0
    duplicate_fraction: float = 0.1
    turing_test: bool = True
    # The real-or-generated block reads its own cases (none of them rated before), one image each.
    turing_cases: int = 12
    turing_real_fraction: float = 0.5  # share of the block's images that are real
    turing_show_label: bool = False  # show the pathology label in that block
    turing_show_prevalence: bool = False  # state the real share on the block's instruction page
    min_case_gap: int = 0  # least items between two images of one case; 0 = half the study's cases (>= 2)
    calibration_feedback: bool = False  # after a calibration item, show whether it was real or generated
    allow_back: bool = False
    show_box: bool = False
    image_size: int = 512
    match_resolution: bool = True  # bring every image through the smallest native size first
    bootstrap: int = 2000  # resamples for the two-way (readers x cases) bootstrap in `study analyze`
    seed: int = 0

    def validate(self) -> None:
        require(bool(self.title.strip()), "title", "expected a non-empty title")
        require(self.n_cases >= 1, "n_cases", f"expected >= 1, got {self.n_cases}")
        require(self.calibration_items >= 0, "calibration_items", f"expected >= 0, got {self.calibration_items}")
        require(self.turing_cases >= 1, "turing_cases", f"expected >= 1, got {self.turing_cases}")
        require(
            0.0 < self.turing_real_fraction < 1.0, "turing_real_fraction", f"expected 0 < x < 1, got {self.turing_real_fraction}"
        )
        require(self.min_case_gap >= 0, "min_case_gap", f"expected >= 0 (0 = automatic), got {self.min_case_gap}")
        require(0.0 <= self.duplicate_fraction <= 0.5, "duplicate_fraction", f"expected 0..0.5, got {self.duplicate_fraction}")
        require(bool(self.readers), "readers", "expected at least one reader name")
        for i, name in enumerate(self.readers):
            require(is_valid_name(name), f"readers[{i}]", f"expected a reader name of {NAME_RULE}, got {name!r}")
        for i, name in enumerate(self.generators):
            require(is_valid_name(name), f"generators[{i}]", f"expected a generator name of {NAME_RULE}, got {name!r}")
            require(
                name not in RESERVED_GENERATOR_NAMES,
                f"generators[{i}]",
                f"{name!r} is the real images, always part of the study; list generators only",
            )
        require(len(set(self.readers)) == len(self.readers), "readers", f"reader names must be unique, got {self.readers}")
        require(bool(self.criteria), "criteria", "expected at least one criterion")
        require(len(set(self.criteria)) == len(self.criteria), "criteria", f"criteria must be unique, got {self.criteria}")
        for i, name in enumerate(self.criteria):
            require(
                re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None and not name.startswith("turing_"),
                f"criteria[{i}]",
                f"expected a lower-case identifier like 'anatomy_realism' (not starting with 'turing_'), got {name!r}",
            )
        for table in ("criterion_questions", "criterion_anchors"):
            for key in getattr(self, table):
                require(key in self.criteria, f"{table}.{key}", f"not one of the study's criteria ({', '.join(self.criteria)})")
        for key, anchors in self.criterion_anchors.items():
            require(len(anchors) == 5, f"criterion_anchors.{key}", f"expected 5 anchors (scores 1..5), got {len(anchors)}")
        require(64 <= self.image_size <= 4096, "image_size", f"expected 64..4096, got {self.image_size}")
        require(self.seed >= 0, "seed", f"expected >= 0, got {self.seed}")
        require(self.bootstrap >= 0, "bootstrap", f"expected >= 0 resamples (0 = no study CIs), got {self.bootstrap}")


@dataclass
class WeightsConfig:
    dir: str = ""  # "" -> $XREAL_BENCH_WEIGHTS, else ~/.cache/xreal-bench/weights


@dataclass
class BenchConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    generators: dict[str, GeneratorConfig] = field(default_factory=dict)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    source: str = "<defaults>"

    @property
    def out(self) -> Path:
        return Path(self.run.out)

    def enabled_generators(self) -> dict[str, GeneratorConfig]:
        return {name: g for name, g in self.generators.items() if g.enabled}

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        data.pop("source")
        data["generators"] = {
            name: {"type": g.type, "enabled": g.enabled, "batch_size": g.batch_size, **to_dict(g.options)}
            for name, g in self.generators.items()
        }
        return data

    def hash(self) -> str:
        """sha256 of everything that can change results (output folder and device excluded)."""
        data = self.to_dict()
        data["run"] = {k: v for k, v in data["run"].items() if k not in ("out", "device")}
        data.pop("report")
        data.pop("study")
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


SECTION_KEYS = ("dataset", "conditioning", "generators", "metrics", "run", "report", "study", "weights")
#: A bench.toml is a few kilobytes; anything this large is the wrong file.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
SET_EXAMPLE = "e.g. --set run.batch_size=8"


@dataclass(frozen=True)
class Override:
    """One ``KEY.PATH=VALUE`` from the command line; an error in it is blamed on :attr:`label`."""

    text: str
    origin: str = ""  # how messages name it (a command-line flag); "" -> "--set KEY.PATH=VALUE"

    @property
    def label(self) -> str:
        return self.origin or f"--set {self.text}"


@dataclass(frozen=True)
class ParsedOverride:
    override: Override
    keys: tuple[str, ...]
    value: Any

    @property
    def key(self) -> str:
        return functools.reduce(join, self.keys, "")

    def covers(self, key: str) -> bool:
        """Whether the value at dotted ``key`` (``a.b``, ``a.b[2]``) comes from this override."""
        return key == self.key or key.startswith((f"{self.key}.", f"{self.key}["))


def load_config(path: str | Path | None = None, overrides: Sequence[str | Override] | None = None) -> BenchConfig:
    """Load and validate ``path`` (defaults alone if None) with ``KEY.PATH=VALUE`` overrides applied.

    An error is blamed on the override whose value it is about (or, for a cross-field check,
    on the first override that makes it appear); otherwise on the file.
    """
    source = "<defaults>" if path is None else str(path)
    raw = {} if path is None else read_toml(Path(path))
    parsed = [parse_override(item if isinstance(item, Override) else Override(item)) for item in overrides or []]
    try:
        return config_from_dict(with_overrides(raw, parsed), source)
    except ConfigError as exc:
        culprit = blame(raw, parsed, source, exc)
        if culprit is None:
            raise
        raise ConfigError(culprit.override.label, exc.key, exc.detail) from None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML tables of ``path``; every way it can fail is a :class:`ConfigError` naming the file."""
    source = str(path)
    try:
        info = path.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_CONFIG_BYTES:
            data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "", "config file not found") from None
    except PermissionError:
        raise ConfigError(source, "", "cannot read the config file (permission denied)") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL character
        raise ConfigError(source, "", f"cannot read the config file ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(source, "", "is a folder; expected a TOML config file (e.g. bench.toml)")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(source, "", "is not a regular file; expected a TOML config file (e.g. bench.toml)")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(source, "", f"is {info.st_size} bytes; expected a TOML config file of at most {MAX_CONFIG_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            source, "", f"expected UTF-8 text (a TOML file), found byte 0x{data[exc.start]:02x} on line {line}"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(source, "", "not valid TOML (arrays or tables nested too deeply)") from None


def parse_override(override: Override) -> ParsedOverride:
    """Split ``a.b.c=value``; the value is parsed as TOML, else taken as a string."""
    key_text, sep, text = override.text.partition("=")
    key_text = key_text.strip()
    if not sep:
        raise ConfigError(override.label, key_text, f"expected KEY.PATH=VALUE (no '=' found), {SET_EXAMPLE}")
    if not key_text:
        raise ConfigError(override.label, "", f"expected KEY.PATH=VALUE (the key before '=' is missing), {SET_EXAMPLE}")
    keys = tuple(part.strip() for part in key_text.split("."))
    if not all(keys):
        raise ConfigError(override.label, key_text, f"expected KEY.PATH=VALUE with no empty name between dots, {SET_EXAMPLE}")
    return ParsedOverride(override, keys, parse_value(text))


def parse_value(text: str) -> Any:
    try:
        parsed = tomllib.loads(f"v = {text}")
    except (tomllib.TOMLDecodeError, RecursionError):
        return text
    return parsed["v"] if parsed.keys() == {"v"} else text  # "1\n[run]" is not one value


def with_overrides(raw: dict[str, Any], overrides: Sequence[ParsedOverride]) -> dict[str, Any]:
    """A copy of ``raw`` with each override's value set at its key path (tables created as needed)."""
    merged = copy.deepcopy(raw)
    for item in overrides:
        node = merged
        for depth, part in enumerate(item.keys[:-1], start=1):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = functools.reduce(join, item.keys[:depth], "")
                raise ConfigError(item.override.label, where, f"is {describe(child)}, not a table, so {item.key} cannot be set")
            node = child
        node[item.keys[-1]] = copy.deepcopy(item.value)
    return merged


def blame(raw: dict[str, Any], overrides: list[ParsedOverride], source: str, error: ConfigError) -> ParsedOverride | None:
    """The override ``error`` comes from, or None when the file alone has it."""
    if not overrides:
        return None
    covering = [item for item in overrides if item.covers(error.key)]
    if covering:
        return covering[-1]  # the last one is the value in effect
    for count in range(len(overrides) + 1):  # a cross-field check: the first override that brings the error
        try:
            config_from_dict(with_overrides(raw, overrides[:count]), source)
        except ConfigError as exc:
            if (exc.key, exc.detail) == (error.key, error.detail):
                return overrides[count - 1] if count else None
    return overrides[-1]


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> BenchConfig:
    for key in raw:
        if key not in SECTION_KEYS:
            raise ConfigError(source, toml_key(key), f"unknown section (known sections: {', '.join(SECTION_KEYS)})")
    sections = {k: v for k, v in raw.items() if k != "generators"}
    cfg = build(BenchConfig, sections, source)
    cfg.source = source
    generators = raw.get("generators", {})
    if not isinstance(generators, dict):
        raise ConfigError(source, "generators", f"expected a table of [generators.<name>] tables, got {describe(generators)}")
    folded: dict[str, str] = {}
    for name in generators:
        other = folded.setdefault(str(name).casefold(), name)
        if other != name:
            raise ConfigError(
                source,
                join("generators", name),
                f"names the same folder as {join('generators', other)} on case-insensitive file systems; choose distinct names",
            )
    cfg.generators = {name: build_generator_config(name, table, source) for name, table in generators.items()}
    for name, gcfg in cfg.enabled_generators().items():
        if getattr(gcfg.options, "prompt_rule", None) == "chexgenbench" and not cfg.dataset.prompts_file:
            raise ConfigError(
                source,
                join(join("generators", name), "prompt_rule"),
                "rule 'chexgenbench' takes each case's prompt from [dataset].prompts_file, which is not set "
                "(without it every image would get the fallback prompt)",
            )
    return cfg


def build_generator_config(name: str, table: Any, source: str) -> GeneratorConfig:
    """Validate one generator table: its name, common keys here, options against the generator's class."""
    path = join("generators", name)
    if not is_valid_name(name):
        raise ConfigError(source, path, f"invalid generator name {name!r} (it names the run's folder): expected {NAME_RULE}")
    if not isinstance(table, dict):
        raise ConfigError(source, path, f"expected a table, got {describe(table)}")
    table = dict(table)
    common = {k: table.pop(k) for k in ("type", "enabled", "batch_size") if k in table}
    type_key = f"{path}.type" if "type" in common else path
    type_name = common.setdefault("type", name)
    if not isinstance(type_name, str):
        raise ConfigError(source, type_key, f"expected a generator type name, got {describe(type_name)}")
    if name in RESERVED_GENERATOR_NAMES and type_name != name:
        raise ConfigError(
            source,
            type_key,
            f"the name {name!r} is reserved for the real test images (type {name!r}); give this generator another name",
        )
    options_type = generator_options_type(type_name, source, type_key)
    cfg = build(GeneratorConfig, {**common, "options": {}}, source, path)
    if cfg.batch_size < 0:
        raise ConfigError(source, f"{path}.batch_size", f"expected >= 0 (0 = run.batch_size), got {cfg.batch_size}")
    cfg.options = build(options_type, table, source, path)
    return cfg


def generator_options_type(type_name: str, source: str, key: str) -> type:
    """The ``Options`` dataclass of generator type ``type_name`` (a plugin that cannot load is a config error)."""
    try:
        options_type = declared(GENERATORS.get(type_name), "Options")
    except RegistryError as exc:
        raise ConfigError(source, key, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a broken plugin (ImportError, SyntaxError, ...)
        raise ConfigError(source, key, f"generator type {type_name!r} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not (isinstance(options_type, type) and dataclasses.is_dataclass(options_type)):
        raise ConfigError(
            source, key, f"generator type {type_name!r} declares Options = {options_type!r}, which is not a dataclass"
        )
    return options_type
