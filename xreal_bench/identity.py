"""What made a generator folder: its identity, recorded in ``<out>/<generator>/identity.json``.

A folder is written by one *generation identity* (:func:`generation_identity`), a flat table of
fields named like the config keys that set them:

- ``generators.<name>.type`` and every validated option ``generators.<name>.<option>``;
- ``run.seed``, ``run.precision`` and the pixel format :data:`PIXEL_FIELDS` (``run.resolution``,
  ``run.bit_depth``, ``dataset.square``, ``dataset.intensity``);
- the conditioning source: ``dataset.kind`` and ``dataset.split`` (and ``dataset.synthetic.*``,
  which define the synthetic set's images and labels), plus only the keys that shape an
  input the generator declares it reads (:data:`INPUT_FIELDS`): ``labels`` → labeler, label
  policy, prompt separator; ``text`` → report section and, when ``dataset.demographics`` is
  set, the digest of its MIMIC-IV files' content (field ``dataset.demographics``; absent when
  unset, so folders made before it existed still match); ``anatomy`` → anatomy source and map
  resolution (and which lung PSPNet calls left); ``pathology`` → labeler, label policy, anatomy
  source, map resolution, box format, fallback and the box CSV's sha256; ``training`` → the training
  split and its seeded subsample (size and seed). File *locations*
  (dataset root, anatomy folder, box CSV path, MIMIC-IV root) are not identity, so a run can be
  evaluated on another machine; the box CSV's and the demographics files' content is;
- code versions: ``code.xreal_bench`` (the package version), ``code.generator`` (the class's
  ``module:qualname``) and ``code.generator_version`` when the class sets a ``version`` string;
- ``weights.<artifact>``: the sha256 of each artifact the generator loads with its options
  (``required_artifacts``: a diffusers snapshot, only the chosen ChexGen checkpoint), ``"absent"`` when
  missing; a stored ``"absent"`` is filled in, a stored field the options no longer load is not compared, and a
  field the stored identity lacks is a difference. A generator without artifacts has none.
- ``dataset.prompts_file`` (its sha256), ``dataset.prompts_format`` and ``dataset.prompts_labels`` when a prompt
  file is set and the generator reads text or labels.

Not identity: ``samples_per_condition``, ``num_cases``, views, batch sizes, device and output
folder — an image depends on its own case and sample, not on how many there are, so a larger
plan extends a run (the one exception is a generator that looks at the whole case set, like
``noise`` estimating the mean intensity from the first cases by id). A re-run whose identity
differs is refused before any image, naming every differing field; ``evaluate`` refuses such a
folder too (:func:`check_generator_dirs`). Imported folders (``xreal-bench import``) have an
identity of type ``imported``: source folder and pixel format (:data:`PIXEL_FIELDS`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xreal_bench import __version__
from xreal_bench.atomic import write_text_atomic
from xreal_bench.data.demographics import demographics_digest
from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import Geometry
from xreal_bench.registry import GENERATORS, declared
from xreal_bench.rundir import IDENTITY_FILE, GeneratorDir
from xreal_bench.validation import to_dict
from xreal_bench.weights import WeightsManager, sha256_file

if TYPE_CHECKING:
    from xreal_bench.config import BenchConfig, GeneratorConfig

IDENTITY_FORMAT = 1
GENERATED, IMPORTED = "generated", "imported"
ABSENT = "absent"
#: The fields an imported folder must share with the config that evaluates it.
PIXEL_FIELDS = ("run.resolution", "run.bit_depth", "dataset.square", "dataset.intensity")
LABEL_FIELDS = (
    "dataset.labeler",
    "dataset.label_policy.uncertain",
    "dataset.label_policy.blank",
    "dataset.label_policy.missing_study",
)
ANATOMY_FIELDS = ("conditioning.anatomy", "conditioning.resolution")
#: Per input kind a generator reads, the config keys that shape that input.
INPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "labels": (*LABEL_FIELDS, "conditioning.prompt_separator"),
    "text": ("conditioning.report_section",),
    "anatomy": ANATOMY_FIELDS,
    "pathology": (*LABEL_FIELDS, *ANATOMY_FIELDS, "conditioning.boxes_format", "conditioning.box_fallback"),
    "image": (),
    "training": ("dataset.train_split", "metrics.memorization_train_n", "metrics.bootstrap_seed"),
}


class IdentityError(UserFacingError):
    """A generator folder made by something other than what the config asks for."""


def plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists), so stored and current values compare."""
    return json.loads(json.dumps(to_dict(value), sort_keys=True, default=str))


def config_value(cfg: BenchConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return plain(node)


def run_fields(cfg: BenchConfig, inputs: Collection[str]) -> dict[str, Any]:
    """The identity fields that depend on the run and the inputs read, not on the generator's own table."""
    keys = ["run.seed", *PIXEL_FIELDS, "run.precision", "dataset.kind", "dataset.split"]
    if cfg.dataset.kind == "synthetic":
        keys += [f"dataset.synthetic.{k}" for k in ("n_subjects", "seed", "image_size")]
    for kind in sorted(inputs):
        keys += [k for k in INPUT_FIELDS.get(kind, ()) if k not in keys]
    fields = {"code.xreal_bench": __version__, **{k: config_value(cfg, k) for k in keys}}
    if "conditioning.anatomy" in fields and cfg.conditioning.anatomy == "pspnet":
        fields["metrics.pspnet_left_lung"] = cfg.metrics.pspnet_left_lung
    if "pathology" in inputs:
        fields["conditioning.boxes_csv"] = box_csv_hash(cfg)
    if "text" in inputs and cfg.dataset.demographics:
        fields["dataset.demographics"] = demographics_digest(cfg.dataset.demographics)
    if cfg.dataset.prompts_file and {"text", "labels"} & set(inputs):
        prompts = Path(cfg.dataset.prompts_file)  # its prompts (text) and, with prompts_labels = "file", its labels
        fields["dataset.prompts_file"] = sha256_file(prompts) if prompts.is_file() else ABSENT
        fields["dataset.prompts_format"] = cfg.dataset.prompts_format
        fields["dataset.prompts_labels"] = cfg.dataset.prompts_labels
    return fields


def box_csv_hash(cfg: BenchConfig) -> str:
    """sha256 of the box CSV the run would read (``"none"`` without one, ``"absent"`` if missing)."""
    from xreal_bench.conditioning.prepare import input_paths

    path = input_paths(cfg)[1]
    if not path:
        return "none"
    return sha256_file(Path(path)) if Path(path).is_file() else ABSENT


def generation_identity(cfg: BenchConfig, name: str, gcfg: GeneratorConfig, *, weights: WeightsManager | None) -> dict[str, Any]:
    """The identity of generator ``name``'s images under ``cfg`` (see the module docstring)."""
    cls = GENERATORS.get(gcfg.type)
    inputs = sorted(declared(cls, "inputs"))
    fields: dict[str, Any] = {f"generators.{name}.type": gcfg.type}
    fields.update({f"generators.{name}.{key}": value for key, value in plain(gcfg.options).items()})
    fields.update(run_fields(cfg, inputs))
    fields["code.generator"] = f"{cls.__module__}:{cls.__qualname__}"
    version = getattr(cls, "version", None)
    if isinstance(version, str) and version:
        fields["code.generator_version"] = version
    manager = weights or WeightsManager(cfg.weights.dir or None)
    for art in cls.required_artifacts(gcfg.options):
        fields[f"weights.{art.name}"] = manager.file_hash(art) if manager.status(art).present else ABSENT
    return {"format": IDENTITY_FORMAT, "type": GENERATED, "generator": name, "inputs": inputs, "fields": fields}


def import_identity(name: str, source: Path, *, resolution: int, bit_depth: int, geometry: Geometry) -> dict[str, Any]:
    """The identity of images imported from ``source`` into generator folder ``name`` at this pixel format."""
    fields = {
        "import.source": str(Path(source).resolve()),
        "run.resolution": resolution,
        "run.bit_depth": bit_depth,
        "dataset.square": geometry.square,
        "dataset.intensity": geometry.intensity,
    }
    return {"format": IDENTITY_FORMAT, "type": IMPORTED, "generator": name, "fields": fields}


def read_identity(gdir: GeneratorDir) -> dict[str, Any] | None:
    """The folder's recorded identity, None when it has no ``identity.json``."""
    if not gdir.identity.is_file():
        return None
    try:
        data = json.loads(gdir.identity.read_text())
        if not (isinstance(data, dict) and isinstance(data.get("fields"), dict) and data.get("type") in (GENERATED, IMPORTED)):
            raise ValueError("expected an object with 'type' and 'fields'")
    except (OSError, ValueError) as exc:
        raise IdentityError(
            f"{gdir.identity} is unreadable ({exc}); what made {gdir.root} cannot be checked: "
            "re-run with --overwrite to regenerate it, or set run.out to a new folder"
        ) from None
    return data


def write_identity(gdir: GeneratorDir, identity: Mapping[str, Any]) -> None:
    record = {**identity, "written": datetime.now(UTC).isoformat(timespec="seconds")}
    write_text_atomic(gdir.identity, json.dumps(record, indent=2, sort_keys=True) + "\n")


def show(value: Any) -> str:
    return "(not recorded)" if value is None else json.dumps(value)


#: Fields added to identities after their format was introduced, with the value every folder made
#: before had: an older identity without the field is read as having this value.
LATER_FIELDS: dict[str, Any] = {"dataset.intensity": "none"}


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """``"field: old -> new"`` for every differing field (of ``keys``, default all); weights
    fields are compared only where both sides are present; a :data:`LATER_FIELDS` field missing
    from ``stored`` counts as its earlier value."""
    lines = []
    for key in sorted(set(stored) | set(current) if keys is None else keys):
        old, new = stored.get(key, LATER_FIELDS.get(key)), current.get(key)
        if key.startswith("weights.") and (old == ABSENT or new in (ABSENT, None)):  # a field only stored: not loaded now
            continue
        if old != new:
            lines.append(f"  {key}: {show(old)} -> {show(new)}")
    return lines


def legacy_message(gdir: GeneratorDir) -> str:
    return (
        f"{gdir.root} has images or a manifest but no {IDENTITY_FILE} (made by an older xreal-bench or by hand), "
        "so what made its images cannot be checked against this config"
    )


def unverifiable(gdir: GeneratorDir, outcome: str, way_out: str) -> IdentityError:
    """The refusal for a folder without ``identity.json``; ``--overwrite`` is offered only where it would work."""
    if gdir.made_by_suite():
        return IdentityError(f"{legacy_message(gdir)}. {outcome} {way_out}")
    return IdentityError(
        f"{legacy_message(gdir)}; it was not made by xreal-bench (no manifest of {gdir.generator!r}), so --overwrite will "
        f"not delete it. {outcome} Move it away, choose another generator name, or set run.out to a new folder."
    )


def check_generation_dir(
    cfg: BenchConfig, name: str, gcfg: GeneratorConfig, *, weights: WeightsManager | None
) -> dict[str, Any] | None:
    """Before generating ``name``: the identity to write (new folder, or recorded weights now
    known), None when the recorded one stands; :class:`IdentityError` naming every difference."""
    gdir = GeneratorDir(cfg.run.out, name)
    current = generation_identity(cfg, name, gcfg, weights=weights)
    stored = read_identity(gdir)
    way_out = (
        f"Nothing was generated. To keep those images, set run.out (or --out) to a new folder; "
        f"to replace them, re-run with --overwrite (deletes {gdir.root} and generates again)."
    )
    if stored is None:
        if gdir.has_content():
            raise unverifiable(gdir, "Nothing was generated.", way_out)
        return current
    if stored["type"] == IMPORTED:
        source = stored["fields"].get("import.source")
        raise IdentityError(f"{gdir.root} holds images imported from {source}, not generated by {name!r}. {way_out}")
    diffs = differences(stored["fields"], current["fields"])
    if diffs:
        raise IdentityError(
            f"{gdir.root} was generated with a different identity than this config asks for:\n"
            + "\n".join(diffs)
            + f"\n{way_out}"
        )
    filled = {k: v for k, v in current["fields"].items() if stored["fields"].get(k, ABSENT) == ABSENT and v != ABSENT}
    return {**stored, "fields": {**stored["fields"], **filled}} if filled else None


def check_import_dir(gdir: GeneratorDir, identity: Mapping[str, Any]) -> bool:
    """Before importing into ``gdir``: True when the folder is new (write ``identity``), False when
    it holds an earlier import of the same identity; :class:`IdentityError` otherwise."""
    stored = read_identity(gdir)
    way_out = f"Choose another --generator name, or pass --overwrite to replace {gdir.root}."
    if stored is None:
        if gdir.has_content():
            raise unverifiable(gdir, "Nothing was imported.", way_out)
        return True
    if stored["type"] != IMPORTED:
        raise IdentityError(f"{gdir.root} holds images generated by a configured generator. Nothing was imported. {way_out}")
    diffs = differences(stored["fields"], identity["fields"])
    if diffs:
        raise IdentityError(
            f"{gdir.root} holds an earlier import with a different identity:\n"
            + "\n".join(diffs)
            + f"\nNothing was imported. {way_out}"
        )
    return False


def check_generator_dir(cfg: BenchConfig, gdir: GeneratorDir, *, weights: WeightsManager | None) -> None:
    """Before scoring ``gdir``: its images must be what ``cfg`` describes, else :class:`IdentityError`.

    A configured generator's full identity must match; an imported folder's pixel format
    (:data:`PIXEL_FIELDS`); a generated folder whose generator is no longer configured, the
    fields that do not depend on its table (:func:`run_fields` for the inputs it recorded).
    """
    way_out = "Evaluate it with the config that made it, or regenerate it (`xreal-bench generate --overwrite`, or a new run.out)."
    stored = read_identity(gdir)
    if stored is None:
        raise IdentityError(
            f"{legacy_message(gdir)}; evaluate refuses to score it. Regenerate it (`xreal-bench generate --overwrite`), "
            "or bring images made elsewhere in with `xreal-bench import`."
        )
    if stored["type"] == IMPORTED:
        diffs = differences(stored["fields"], {k: config_value(cfg, k) for k in PIXEL_FIELDS}, PIXEL_FIELDS)
        way_out = "Evaluate with the pixel format they were imported at, or import them again (`xreal-bench import --overwrite`)."
    elif gdir.generator in cfg.generators:
        current = generation_identity(cfg, gdir.generator, cfg.generators[gdir.generator], weights=weights)
        diffs = differences(stored["fields"], current["fields"])
    else:
        shared = run_fields(cfg, stored.get("inputs", ()))
        diffs = differences(stored["fields"], shared, shared)
    if diffs:
        raise IdentityError(
            f"{gdir.root} was made with a different identity than this config; scoring it would report numbers for "
            "settings its images do not have:\n" + "\n".join(diffs) + f"\n{way_out}"
        )


def check_generator_dirs(cfg: BenchConfig, dirs: Iterable[GeneratorDir], *, weights: WeightsManager | None) -> None:
    """:func:`check_generator_dir` for every folder; one :class:`IdentityError` listing every refusal."""
    problems = []
    for gdir in dirs:
        try:
            check_generator_dir(cfg, gdir, weights=weights)
        except IdentityError as exc:
            problems.append(str(exc))
    if problems:
        raise IdentityError("\n".join(problems))
