"""Weights manager: every external artifact the suite can load, as its users declare them.

Generators and evaluators, built-in or plugin, declare the files they load as :class:`Artifact`
records (a generator's ``artifacts`` class attribute; an evaluator's ``artifacts`` attribute);
:func:`collect_artifacts` gathers them through the registries, so a plugin's files are listed
like the built-ins'. Every loader asks :meth:`WeightsManager.require` for its file. A missing file raises one
:class:`MissingWeightsError` naming the artifact, the exact path looked at, and how to obtain
it; nothing ever falls back to random weights. The weights folder is, in order:
``[weights].dir`` in the config, ``$XREAL_BENCH_WEIGHTS``, ``~/.cache/xreal-bench/weights``.

Trust: :meth:`WeightsManager.trust` hashes a file before it is loaded. A file whose size or
sha256 (or the sha256 prefix its published name carries) differs from the declaration is
refused (:class:`WeightsMismatchError`); a file without a published reference is loaded but
marked ``"unverified (no published hash)"`` wherever its hash is reported. Cached digests are
keyed by device, inode, size, mtime and ctime, so a different file never inherits one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
import shutil
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from xreal_bench.atomic import write_atomic, write_text_atomic
from xreal_bench.errors import UserFacingError

ENV_VAR = "XREAL_BENCH_WEIGHTS"
DEFAULT_DIR = Path("~/.cache/xreal-bench/weights")


@dataclass(frozen=True)
class Artifact:
    """One external file or folder, declared by the generator or evaluator that loads it.

    ``path`` is relative to the weights folder (or to ``package`` for files shipped inside a
    Python package). ``sha256``/``size`` are set where the published bytes are known;
    ``sha256_prefix`` where only a prefix is published (torch hub file names ``name-<prefix>.pth``).
    ``fetch_files``: for a hub snapshot, the files (glob patterns) ``weights fetch`` downloads; empty
    means the whole repository. They must cover every required file of ``files``.
    """

    name: str
    path: str
    source: str
    license: str
    description: str
    kind: str = "file"  # "file" or "dir" (a snapshot folder; ``files`` must all exist in it)
    files: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    sha256_prefix: str | None = None
    url: str | None = None  # direct download for `weights fetch`
    hub_id: str | None = None  # Hugging Face repo id for `weights fetch`
    package: str | None = None
    fetch_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        uncovered = [f for f in self.files if self.fetch_files and not any(fnmatch(f, p) for p in self.fetch_files)]
        if uncovered:
            raise ValueError(f"artifact {self.name!r}: fetch_files {self.fetch_files} leave out required {uncovered}")


@dataclass
class ArtifactCatalog:
    """Every declared artifact with who declares it, and the registry entries that could not be read."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)
    users: dict[str, list[str]] = field(default_factory=dict)  # artifact name -> "generator xreal", ...
    problems: list[str] = field(default_factory=list)


def collect_artifacts() -> ArtifactCatalog:
    """Gather the ``artifacts`` declared by every registered generator and evaluator (plugins included).

    Two different declarations under one name are an error naming both declarers; an entry
    that cannot be imported is reported in ``problems`` and does not hide the others.
    """
    from xreal_bench.registry import ARTIFACT_SETS, EVALUATORS, GENERATORS, import_target

    catalog = ArtifactCatalog()
    declarers = [
        (f"{r.kind} {name}", functools.partial(declared_by, r, name))
        for r in (GENERATORS, *EVALUATORS.values())
        for name in r.names()
    ]
    declarers += [(f"manifest {name}", functools.partial(import_target, target)) for name, target in ARTIFACT_SETS.items()]
    for who, load in declarers:
        try:
            artifacts = tuple(load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            catalog.problems.append(f"{who}: cannot load ({type(exc).__name__}: {exc})")
            continue
        for art in artifacts:
            known = catalog.artifacts.setdefault(art.name, art)
            if known != art:
                first = catalog.users[art.name][0]
                raise UserFacingError(f"artifact {art.name!r} is declared differently by {first} and by {who}")
            users = catalog.users.setdefault(art.name, [])
            if who not in users:
                users.append(who)
    return catalog


def declared_by(registry: Any, name: str) -> Any:
    """The ``artifacts`` declared by entry ``name`` of ``registry``."""
    from xreal_bench.registry import declared

    return declared(registry.get(name), "artifacts")


class MissingWeightsError(UserFacingError):
    """A required artifact is not where the weights manager expects it."""


class WeightsLoadError(UserFacingError):
    """A weights file exists but is not (only) the tensors the loader expects."""


class WeightsMismatchError(WeightsLoadError):
    """A file's size or sha256 differs from its artifact's published reference."""


VERIFIED = "verified"
UNVERIFIED = "unverified (no published hash)"
#: ``weights_hash`` and ``weights_status`` of an evaluator that loads no weights.
WEIGHT_FREE = "none (weight-free)"


@dataclass(frozen=True)
class WeightsTrust:
    """What the suite knows about a present artifact: its sha256 and whether a published reference confirms it."""

    sha256: str
    status: str  # VERIFIED or UNVERIFIED

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED


def has_reference(art: Artifact) -> bool:
    """Whether published bytes are known for ``art`` (a full sha256 or the hash prefix in its name)."""
    return art.sha256 is not None or art.sha256_prefix is not None


def weights_dir(configured: str = "") -> Path:
    """The weights folder: config value, else ``$XREAL_BENCH_WEIGHTS``, else the user cache."""
    chosen = configured or os.environ.get(ENV_VAR) or str(DEFAULT_DIR)
    return Path(chosen).expanduser()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtifactStatus:
    name: str
    path: Path
    present: bool
    detail: str
    verified: bool = False


#: An artifact, or its name (looked up among the declared artifacts).
ArtifactRef = Artifact | str


class WeightsManager:
    """Locates, checks and (with internet) fetches declared artifacts.

    ``artifacts`` (tests, custom layouts) replaces declared artifacts of the same name; every
    other name is looked up among the declarations (:func:`collect_artifacts`) on first use.
    """

    def __init__(self, root: str | Path | None = None, artifacts: Mapping[str, Artifact] | None = None):
        self.root = Path(root).expanduser() if root else weights_dir()
        self.overrides = dict(artifacts or {})
        self.catalog: ArtifactCatalog | None = None

    @property
    def artifacts(self) -> dict[str, Artifact]:
        """Every known artifact by name: the declared ones, with this manager's overrides."""
        if self.catalog is None:
            self.catalog = collect_artifacts()
        return {**self.catalog.artifacts, **self.overrides}

    def artifact(self, ref: ArtifactRef) -> Artifact:
        name = ref if isinstance(ref, str) else ref.name
        if name in self.overrides:
            return self.overrides[name]
        if isinstance(ref, Artifact):
            return ref
        try:
            return self.artifacts[name]
        except KeyError:
            raise KeyError(f"unknown artifact {name!r}; known: {', '.join(sorted(self.artifacts))}") from None

    def path(self, ref: ArtifactRef) -> Path:
        """Where the artifact is expected (whether or not it exists)."""
        art = self.artifact(ref)
        if art.package:
            return Path(str(importlib.resources.files(art.package))) / art.path
        return self.root / art.path

    def missing_files(self, ref: ArtifactRef) -> list[Path]:
        art = self.artifact(ref)
        path = self.path(art)
        if art.kind == "dir":
            return [path / f for f in art.files if not (path / f).is_file()] if path.is_dir() else [path]
        return [] if path.is_file() and path.stat().st_size > 0 else [path]

    def require(self, ref: ArtifactRef) -> Path:
        """The artifact's path, or :class:`MissingWeightsError` saying where and how to get it."""
        art = self.artifact(ref)
        missing = self.missing_files(art)
        if missing:
            raise MissingWeightsError(self.missing_message(art, missing))
        return self.path(art)

    def missing_message(self, ref: ArtifactRef, missing: list[Path]) -> str:
        art = self.artifact(ref)
        name = art.name
        what = "folder" if art.kind == "dir" and missing == [self.path(art)] else "file"
        lines = [
            f"missing weights {name!r} ({art.description}):",
            *(f"  {what} not found: {p}" for p in missing),
            f"  weights folder: {self.root} (set [weights].dir in the config or ${ENV_VAR} to change it)",
            f"  source: {art.source}",
            f"  licence: {art.license}",
        ]
        if art.url or art.hub_id:
            lines.append(f"  get it: xreal-bench weights fetch {name}   (on a machine with internet access)")
        lines.append(f"  or place it by hand at: {self.path(art)}   (xreal-bench weights path {name})")
        return "\n".join(lines)

    def status(self, ref: ArtifactRef) -> ArtifactStatus:
        art = self.artifact(ref)
        missing = self.missing_files(art)
        detail = "present" if not missing else f"missing ({len(missing)} file(s))"
        return ArtifactStatus(art.name, self.path(art), not missing, detail)

    def file_hash(self, ref: ArtifactRef) -> str:
        """sha256 of a present file artifact (cached next to it, see :func:`cached_sha256`); for
        folders, a hash over every file of the folder (:func:`folder_files`: weights included, so
        swapping a snapshot's UNet changes it), each with its path."""
        art = self.artifact(ref)
        path = self.require(art)
        if art.package:
            return sha256_file(path)  # shipped files are small; never write sidecars into the package
        if art.kind == "file":
            return cached_sha256(path)
        joined = "".join(f"{f.relative_to(path).as_posix()}\0{cached_sha256(f)}\n" for f in folder_files(path))
        return hashlib.sha256(joined.encode()).hexdigest()

    def check(self, ref: ArtifactRef) -> tuple[str, str | None]:
        """``(sha256, why it differs from the published reference or None)`` of a present artifact.

        Against a published reference the bytes are always hashed afresh (a sidecar is never
        trusted to vouch for a file); without one, the cached digest is the file's identity.
        """
        art = self.artifact(ref)
        path = self.require(art)
        if art.kind == "file" and art.size is not None and path.stat().st_size != art.size:
            return "", f"size {path.stat().st_size} != published {art.size}"
        if not has_reference(art):
            return self.file_hash(art), None
        digest = sha256_file(path) if art.kind == "file" else self.file_hash(art)
        if art.sha256 is not None and digest != art.sha256:
            return digest, f"sha256 {digest} != published {art.sha256}"
        if art.sha256_prefix is not None and not digest.startswith(art.sha256_prefix):
            return digest, f"sha256 {digest} does not start with {art.sha256_prefix} (the hash prefix in the file name)"
        return digest, None

    def trust(self, ref: ArtifactRef) -> WeightsTrust:
        """Hash the present artifact before it is loaded: its sha256 and ``"verified"`` when a published
        reference confirms it, ``"unverified (no published hash)"`` when none exists.

        A file that differs from its published reference raises :class:`WeightsMismatchError`
        naming the file and how to get it again; nothing is loaded from it.
        """
        art = self.artifact(ref)
        digest, problem = self.check(art)
        if problem is not None:
            raise WeightsMismatchError(self.mismatch_message(art, problem))
        return WeightsTrust(digest, VERIFIED if has_reference(art) else UNVERIFIED)

    def mismatch_message(self, ref: ArtifactRef, problem: str) -> str:
        art = self.artifact(ref)
        lines = [f"refusing to load {self.path(art)}: not the published {art.name!r} ({art.description}): {problem}"]
        if art.url or art.hub_id:
            lines.append(f"  get it again: xreal-bench weights fetch {art.name}   (on a machine with internet access)")
        lines.append(f"  source: {art.source}")
        return "\n".join(lines)

    def verify(self, ref: ArtifactRef) -> ArtifactStatus:
        """Check presence, size and sha256 offline against the published values: ``verified`` only
        when a reference confirms the file, ``unverified`` when there is none, failed on a mismatch."""
        art = self.artifact(ref)
        status = self.status(art)
        if not status.present:
            return status
        digest, problem = self.check(art)
        if problem is not None:
            return ArtifactStatus(art.name, status.path, False, problem)
        what = f"all {len(art.files)} required file(s) present, " if art.kind == "dir" else ""
        known = has_reference(art)
        detail = f"{what}sha256 {digest}" + (" matches the published reference" if known else " (no published hash)")
        return ArtifactStatus(art.name, status.path, True, detail, known)

    def fetch(self, ref: ArtifactRef) -> Path:
        """Download the artifact into place (needs internet; atomic)."""
        art = self.artifact(ref)
        name = art.name
        target = self.path(art)
        if art.url:
            try:
                with urllib.request.urlopen(art.url, timeout=30) as response:
                    write_atomic(target, lambda out: shutil.copyfileobj(response, out))
            except OSError as exc:
                raise ConnectionError(
                    f"could not download {name!r} from {art.url}: {exc}\n"
                    f"  download it on a machine with internet access and place it at {target}"
                ) from None
            return target
        if art.hub_id:
            try:
                from huggingface_hub import snapshot_download

                snapshot_download(art.hub_id, local_dir=target, allow_patterns=list(art.fetch_files) or None)
            except Exception as exc:  # noqa: BLE001 - any hub failure gets the same advice
                raise ConnectionError(
                    f"could not download {name!r} from the Hugging Face hub ({art.hub_id}): {exc}\n"
                    f"  access may be gated; log in with `huggingface-cli login`, or copy the snapshot folder to {target}"
                ) from None
            return target
        raise ConnectionError(f"{name!r} has no public download: {art.source}\n  place it at {target}")


SIDECAR = ".sha256.json"


def folder_files(folder: Path) -> list[Path]:
    """The files that make a folder artifact what it is: every regular file below it, linked files
    and linked folders followed (a Hugging Face cache snapshot, a snapshot assembled with ``ln -s``;
    a folder reached twice through a link loop is read once), sorted, except hash sidecars,
    Markdown model cards and hidden paths (``.git``, ``.cache``, ``.gitattributes``)."""
    found: list[Path] = []
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(top) / name
            if not name.startswith(".") and not name.endswith(SIDECAR) and path.suffix != ".md" and path.is_file():
                found.append(path)
    return sorted(found)


def cached_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered in ``<path>.sha256.json``.

    The memo is keyed by device, inode, size, mtime_ns and ctime_ns. ``cp -p``, ``rsync -t`` or
    ``touch -d`` can give another file the same size and mtime, but the kernel sets ctime on
    every content or metadata change and nothing can set it back, so a swapped file never
    inherits a digest; any doubt (unreadable or odd sidecar, changed key) means hashing again.
    """
    before = path.stat()
    key = file_key(before)
    sidecar = path.with_name(path.name + SIDECAR)
    try:
        data = json.loads(sidecar.read_text())
        if isinstance(data, dict) and data.get("key") == key and is_sha256(data.get("sha256")):
            return data["sha256"]
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    if file_key(path.stat()) != key:
        return digest  # changed while hashing: do not remember a digest of uncertain bytes
    try:
        write_text_atomic(sidecar, json.dumps({"key": key, "sha256": digest}))
    except OSError:
        pass  # read-only weights folder: hash again next time
    return digest


def file_key(stat: os.stat_result) -> dict[str, int]:
    """What identifies one version of a file's bytes, for :func:`cached_sha256`."""
    return {
        "dev": stat.st_dev,
        "ino": stat.st_ino,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
