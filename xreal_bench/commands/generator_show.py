"""``xreal-bench generators show NAME [--case ID]``: the exact protocol a generator would run, loading no weights.

:func:`show_generator` collects, for a configured generator (or a generator type with its
default options):

- every :class:`~xreal_bench.generators.base.ProtocolStep` of ``Generator.protocol`` (its options
  with their cited sources, then the adapter's own steps: prompt, text encoder, scheduler, ...);
- its declared inputs and the run settings that apply (resolution, bit depth, square mode,
  precision, device, batch size, seed rule);
- the conditioning sources of the config (report section, anatomy maps, boxes);
- with a case: the case as the dataset layer loads it and its Condition built by
  :func:`~xreal_bench.conditioning.build_condition` exactly as a run does, except that anatomy
  maps and fallback boxes are not computed (the output names the source that would give them);
- each weights file the options need, present (with its path) or missing (with the weights
  manager's message: where it was looked for and how to get it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import Generator, GeneratorContext, ProtocolStep

if TYPE_CHECKING:
    from xreal_bench.config import BenchConfig, GeneratorConfig
    from xreal_bench.data.mimic import DatasetScan
    from xreal_bench.types import Case, CaseFacts, Condition
    from xreal_bench.weights import WeightsManager

#: Inputs ``generators show`` does not compute (they need the anatomy maps, i.e. a segmenter or files).
NOT_COMPUTED = "not computed by `generators show`"
SEED_RULE = (
    "image seed = the first 8 bytes (little-endian, 63 bits) of sha256('<run.seed>|<generator>|<case_id>|<sample_index>'): "
    "the same for any batch size, order, resume or rank"
)


@dataclass(frozen=True)
class WeightsFile:
    """One weights file the generator's options need: present at ``path``, or missing with the manager's message."""

    name: str
    description: str
    present: bool
    path: str
    missing_files: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class GeneratorShow:
    """Everything ``generators show`` prints; :meth:`record` is the ``--json`` object, :meth:`text` the table."""

    name: str
    type_name: str
    description: str
    defined_by: str
    enabled: bool
    inputs: tuple[str, ...]
    unavailable_inputs: dict[str, str]
    protocol: tuple[ProtocolStep, ...]
    run: tuple[ProtocolStep, ...]
    conditioning: tuple[ProtocolStep, ...]
    case: dict[str, Any] | None
    condition: dict[str, Any] | None
    weights: tuple[WeightsFile, ...]

    def record(self) -> dict[str, Any]:
        steps = lambda items: [asdict(s) for s in items]  # noqa: E731
        return {
            "generator": self.name,
            "type": self.type_name,
            "description": self.description,
            "defined_by": self.defined_by,
            "enabled": self.enabled,
            "inputs": list(self.inputs),
            "unavailable_inputs": dict(self.unavailable_inputs),
            "protocol": steps(self.protocol),
            "run": steps(self.run),
            "conditioning": steps(self.conditioning),
            "case": self.case,
            "condition": self.condition,
            "weights": [asdict(w) for w in self.weights],
        }

    def text(self) -> str:
        lines = [f"generator {self.name!r} (type {self.type_name!r}): {self.description or 'no description'}"]
        lines.append(f"  defined by: {self.defined_by}" + ("" if self.enabled else " (enabled = false: a run skips it)"))
        lines.append(f"  inputs: {', '.join(self.inputs) or 'none'}")
        lines += [f"  cannot be supplied here: {kind}: {why}" for kind, why in self.unavailable_inputs.items()]
        lines += section("protocol (each value, then where it comes from)", self.protocol)
        lines += section("run settings", self.run)
        lines += section("conditioning sources", self.conditioning)
        if self.case is not None:
            lines += ["", f"case {self.case['case_id']} (as the dataset layer loads it):"]
            lines += [f"  {key} = {shown(value)}" for key, value in self.case.items() if key != "case_id"]
        if self.condition is not None:
            lines += ["", f"condition of sample {self.condition['sample_index']} (built as a run builds it):"]
            lines += [f"  {key} = {shown(value)}" for key, value in self.condition.items() if key != "sample_index"]
        lines += ["", "weights (nothing is loaded here):"]
        if not self.weights:
            lines.append("  none needed")
        for w in self.weights:
            if w.present:
                lines.append(f"  present  {w.name}  {w.path}")
            else:
                lines.append(f"  MISSING  {w.name}")
                lines += [f"      {line}" for line in w.message.splitlines()]
        return "\n".join(lines) + "\n"


def section(title: str, steps: Sequence[ProtocolStep]) -> list[str]:
    lines = ["", f"{title}:"]
    if not steps:
        return [*lines, "  none"]
    for step in steps:
        lines.append(f"  {step.key} = {step.value}")
        if step.source:
            lines.append(f"      {step.source}")
    return lines


def shown(value: Any, *, nested: bool = False) -> str:
    """A case or condition value for the text output: strings quoted exactly, lists joined, records as k=v."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(shown(v, nested=True) for v in value) + "]"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={shown(v, nested=True)}" for k, v in value.items())
        return "{" + text + "}" if nested else text or "none"
    return str(value)


def resolve(cfg: BenchConfig, name: str) -> tuple[GeneratorConfig, str]:
    """``name``'s generator table and where it is defined: a ``[generators.<name>]`` table of the
    config, else the generator type ``name`` with its default options."""
    from xreal_bench.config import build_generator_config
    from xreal_bench.registry import GENERATORS

    if name in cfg.generators:
        return cfg.generators[name], f"[generators.{name}] of {cfg.source}"
    types = GENERATORS.names()
    if name in types:
        return build_generator_config(name, {}, f"generator type {name!r}"), (
            f"generator type {name!r} with its default options (no [generators.{name}] in {cfg.source})"
        )
    raise UserFacingError(
        f"unknown generator {name!r}: not a [generators.<name>] table of {cfg.source} nor a generator type\n"
        f"  configured: {', '.join(cfg.generators) or 'none'}\n"
        f"  types: {', '.join(types)} (`xreal-bench generators list` describes them)"
    )


@dataclass(frozen=True, eq=False)
class CaseView:
    """What ``--case`` adds: the scan, the inputs it cannot supply, the case's sources, its record and Condition."""

    scan: DatasetScan
    unavailable: dict[str, str]
    sources: list[ProtocolStep]
    case: dict[str, Any]
    condition: Condition
    not_computed: dict[str, str]


def show_generator(cfg: BenchConfig, name: str, *, case_id: str = "", weights: WeightsManager) -> GeneratorShow:
    """What generator ``name`` would run under ``cfg`` (for case ``case_id`` when given), loading no weights."""
    from xreal_bench.generators.registry import generator_class

    gcfg, defined_by = resolve(cfg, name)
    cls = generator_class(gcfg.type)
    view = case_view(cfg, name, case_id, cls.inputs) if case_id else None
    context = GeneratorContext(
        cases=view.scan.cases if view is not None else (),
        dataset_kind=cfg.dataset.kind,
        resolution=cfg.run.resolution,
        square=cfg.dataset.square,
        intensity=cfg.dataset.intensity,
        device=usable_device(cfg.run.device),
        precision=cfg.run.precision,
        weights=weights,
    )
    condition = view.condition if view is not None else None
    return GeneratorShow(
        name=name,
        type_name=cls.type_name,
        description=cls.description,
        defined_by=defined_by,
        enabled=gcfg.enabled,
        inputs=tuple(sorted(cls.inputs)),
        unavailable_inputs=view.unavailable if view is not None else {},
        protocol=tuple(cls.protocol(gcfg.options, context, condition)),
        run=tuple(run_steps(cfg, name, gcfg)),
        conditioning=tuple(conditioning_steps(cfg, cls.inputs) + (view.sources if view is not None else [])),
        case=view.case if view is not None else None,
        condition=None if view is None else {**condition_fields(view.condition), "not_computed": view.not_computed},
        weights=tuple(weights_files(cls, gcfg.options, weights)),
    )


def case_view(cfg: BenchConfig, name: str, case_id: str, reads: Collection[str]) -> CaseView:
    """The case ``case_id`` as the dataset layer loads it and its sample-0 Condition for a generator reading ``reads``."""
    from xreal_bench.conditioning.prepare import unavailable_inputs

    scan = scan_for_case(cfg)
    case = find_case(cfg, scan, case_id)
    facts, boxes_step, skipped = facts_without_maps(cfg, scan, case, reads)
    return CaseView(
        scan=scan,
        unavailable={kind: why for kind, why in unavailable_inputs(cfg, scan).items() if kind in reads},
        sources=[anatomy_step(cfg, case, reads), boxes_step],
        case=case_fields(case),
        condition=case_condition(cfg, name, facts, reads=set(reads) - set(skipped)),
        not_computed=skipped,
    )


def scan_for_case(cfg: BenchConfig) -> DatasetScan:
    from xreal_bench.data.dataset import load_dataset

    return load_dataset(cfg, progress=False)


def find_case(cfg: BenchConfig, scan: DatasetScan, case_id: str) -> Case:
    """The case ``case_id`` of the scan; an error saying how to find the case ids otherwise."""
    for case in scan.cases:
        if case.case_id == case_id:
            return case
    shown_ids = ", ".join(c.case_id for c in scan.cases[:3]) + (", ..." if len(scan.cases) > 3 else "")
    subsample = (
        f"; run.num_cases = {cfg.run.num_cases} keeps a stratified subsample of {scan.available} usable images"
        if cfg.run.num_cases
        else ""
    )
    raise UserFacingError(
        f"unknown case id {case_id!r}: not among the {len(scan.cases)} cases of split {scan.split!r} "
        f"(views {', '.join(cfg.dataset.views)}) in {scan.root}{subsample}\n"
        f"  case ids are the images' dicom_id, e.g. {shown_ids or 'none'}; a run lists its cases in "
        f"{cfg.out / 'cases.jsonl'}, and `xreal-bench data summary` shows what the split keeps"
    )


def facts_without_maps(
    cfg: BenchConfig, scan: DatasetScan, case: Case, reads: Collection[str]
) -> tuple[CaseFacts, ProtocolStep, dict[str, str]]:
    """The case's facts as a run prepares them, without anatomy maps: boxes from the box CSV (or
    none) when the rule needs no map; ``(facts, the boxes step, {input: why it is not computed})``."""
    from xreal_bench.conditioning.prepare import case_facts, csv_box_sets, input_paths
    from xreal_bench.types import CaseFacts

    skipped: dict[str, str] = {}
    if "anatomy" in reads:
        skipped["anatomy"] = f"{NOT_COMPUTED} (conditioning.anatomy = {cfg.conditioning.anatomy!r})"
    key = "pathology boxes for this case"
    if "pathology" not in reads:
        return CaseFacts(case), ProtocolStep(key, "not read by this generator"), skipped
    csv = csv_box_sets(cfg, scan, [case]).get(case.case_id)
    fallback = cfg.conditioning.box_fallback
    try:
        facts = case_facts(case, csv=csv, cfg=cfg, anatomy=None)
    except RuntimeError:
        why = f"box_fallback = {fallback!r} places them on the anatomy map: {NOT_COMPUTED}"
        skipped["pathology"] = why
        return CaseFacts(case), ProtocolStep(key, f"no box in {input_paths(cfg)[1] or 'a box CSV'}; {why}"), skipped
    boxes = facts.boxes_for(0)
    where = f"{len(boxes.boxes)} box(es) from {input_paths(cfg)[1]}" if csv is not None else f"box_fallback = {fallback!r}"
    value = where + (f" ({'; '.join(boxes.notes)})" if boxes.notes else "")
    return facts, ProtocolStep(key, value, "conditioning.boxes_csv, conditioning.box_fallback"), skipped


def anatomy_step(cfg: BenchConfig, case: Case, reads: Collection[str]) -> ProtocolStep:
    from xreal_bench.conditioning.prepare import anatomy_configured, input_paths

    key = "anatomy map for this case"
    if "anatomy" not in reads:
        return ProtocolStep(key, "not read by this generator")
    cc = cfg.conditioning
    if not anatomy_configured(cfg):
        return ProtocolStep(key, "none: the run would refuse this generator", "conditioning.anatomy")
    if cc.anatomy == "pspnet":
        return ProtocolStep(
            key, f"segmented by PSPNet from {case.image_path} at run time ({NOT_COMPUTED})", "conditioning.anatomy"
        )
    path = Path(input_paths(cfg)[0]) / f"{case.case_id}.png"
    state = "present" if path.is_file() else "absent: the run would refuse it"
    return ProtocolStep(key, f"{path} ({state}; {NOT_COMPUTED})", "conditioning.anatomy_dir")


def case_condition(cfg: BenchConfig, name: str, facts: CaseFacts, *, reads: Collection[str]) -> Condition:
    """Sample 0's Condition, by the run's own :func:`build_condition` and seed rule."""
    from xreal_bench.conditioning import ConditionSettings, build_condition
    from xreal_bench.rundir import seed_for

    seed = seed_for(cfg.run.seed, name, facts.case_id, 0)
    settings = ConditionSettings.from_config(cfg)
    return build_condition(facts, sample_index=0, seed=seed, reads=reads, anatomy=None, settings=settings)


def case_fields(case: Case) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "subject_id": case.subject_id,
        "study_id": case.study_id,
        "split": case.split,
        "view": case.view,
        "image_path": str(case.image_path),
        "study_date": case.study_date,
    }


def condition_fields(condition: Condition) -> dict[str, Any]:
    """The Condition's JSON-able fields (the anatomy map and mask arrays are left out)."""
    demographics = condition.demographics
    return {
        "sample_index": condition.sample_index,
        "seed": condition.seed,
        "positives": list(condition.positives),
        "prompt": condition.prompt,
        "report": condition.report,
        "findings": condition.findings,
        "impression": condition.impression,
        "report_text": condition.report_text,
        "demographics": None if demographics is None else {**asdict(demographics), "notes": list(demographics.notes)},
        "boxes": [asdict(b) for b in condition.boxes],
        "mask_source": condition.mask_source,
        "notes": list(condition.notes),
    }


def run_steps(cfg: BenchConfig, name: str, gcfg: GeneratorConfig) -> list[ProtocolStep]:
    """The run settings that apply to every image of this generator."""
    run = cfg.run
    batch = (
        ProtocolStep("batch_size", str(gcfg.batch_size), f"generators.{name}.batch_size")
        if gcfg.batch_size
        else ProtocolStep("batch_size", str(run.batch_size), f"run.batch_size (generators.{name}.batch_size = 0)")
    )
    return [
        ProtocolStep("resolution", f"{run.resolution} px", "run.resolution: every image, real and generated, is stored at it"),
        ProtocolStep("bit_depth", f"{run.bit_depth}-bit grayscale PNG", "run.bit_depth"),
        ProtocolStep("square", cfg.dataset.square, "dataset.square: how a non-square image becomes square, real and generated"),
        ProtocolStep(
            "intensity", cfg.dataset.intensity, "dataset.intensity: per-image rule applied before squaring, real and generated"
        ),
        ProtocolStep("precision", run.precision, "run.precision"),
        ProtocolStep("device", device_text(run.device), "run.device"),
        batch,
        ProtocolStep("samples_per_condition", str(run.samples_per_condition), "run.samples_per_condition"),
        ProtocolStep("seed", str(run.seed), f"run.seed; {SEED_RULE}"),
    ]


def usable_device(requested: str) -> str:
    """The device a run would use here; ``requested`` itself when it cannot be used (:func:`device_text` says why)."""
    from xreal_bench.distributed import DistInfo, device_problem, resolve_device

    return requested if device_problem(requested, DistInfo()) else resolve_device(requested, DistInfo())


def device_text(requested: str) -> str:
    """``run.device`` with what it resolves to on this machine (or why it cannot be used here)."""
    from xreal_bench.distributed import DistInfo, device_problem, resolve_device

    if (problem := device_problem(requested, DistInfo())) is not None:
        return f"{requested} (not usable on this machine: {problem})"
    return requested if requested != "auto" else f"auto (here: {resolve_device(requested, DistInfo())})"


def conditioning_steps(cfg: BenchConfig, reads: Collection[str]) -> list[ProtocolStep]:
    """Where the config takes each input kind from; inputs the generator does not read are marked."""
    from xreal_bench.conditioning.prepare import input_paths

    cc = cfg.conditioning
    anatomy_dir, boxes_csv = input_paths(cfg)
    unread = lambda kind: "" if kind in reads else "; not read by this generator"  # noqa: E731
    section_order = "impression, else findings" if cc.report_section == "impression" else "findings, else impression"
    anatomy = {
        "folder": f"folder {anatomy_dir or '(anatomy_dir not set)'} (<case_id>.png label maps)",
        "pspnet": "pspnet: torchxrayvision's PSPNet segments each real image (weights 'xrv-pspnet'), maps cached",
        "none": "none",
    }[cc.anatomy]
    boxes = f"{boxes_csv} ({cc.boxes_format})" if boxes_csv else "no box CSV"
    return [
        ProtocolStep("report", section_order + unread("text"), "conditioning.report_section (Condition.report)"),
        ProtocolStep(
            "label prompt separator",
            repr(cc.prompt_separator) + unread("labels"),
            "conditioning.prompt_separator (Condition.prompt; adapters' prompt rules build their own)",
        ),
        ProtocolStep("anatomy", anatomy + unread("anatomy"), "conditioning.anatomy, conditioning.anatomy_dir"),
        ProtocolStep(
            "pathology boxes",
            f"{boxes}; cases without a box: box_fallback = {cc.box_fallback!r}" + unread("pathology"),
            "conditioning.boxes_csv, conditioning.boxes_format, conditioning.box_fallback",
        ),
        ProtocolStep("conditioning resolution", f"{cc.resolution} px (anatomy maps, pathology masks)", "conditioning.resolution"),
    ]


def weights_files(cls: type[Generator], options: Any, weights: WeightsManager) -> list[WeightsFile]:
    """Each artifact ``options`` need: present, or missing with where it was looked for and how to get it."""
    files = []
    for artifact in cls.required_artifacts(options):
        missing = weights.missing_files(artifact)
        files.append(
            WeightsFile(
                name=artifact.name,
                description=artifact.description,
                present=not missing,
                path=str(weights.path(artifact)),
                missing_files=tuple(str(p) for p in missing),
                message=weights.missing_message(artifact, missing) if missing else "",
            )
        )
    return files
