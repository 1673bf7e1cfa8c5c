"""The metric table: one declaration per metric, in column order.

Everything else derives from it: which names ``metrics.enabled`` accepts and its default, the
evaluators a run builds, what the evaluation pass computes (paired MS-SSIM, per-case
diversity, thresholds), scoring (each enabled entry's compute function), and the leaderboard,
paper tables, LaTeX names and figures. Adding a metric is one entry here plus its compute
function in :mod:`xreal_bench.metrics.compute`; no other module names a metric
(``tests/test_metric_table.py`` checks it).

Result rows are named after entries, including the component rows of a metric (its ``parts``,
e.g. Dice per structure) and per-class rows ``<per_class>/<label>`` (e.g. ``auc/Edema``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from xreal_bench.metrics.cmmd import cmmd_rows
from xreal_bench.metrics.compute import (
    auc_rows,
    dice_rows,
    diversity_rows,
    f1_rows,
    frechet_rows,
    kid_rows,
    paired_ms_ssim_rows,
    per_image_rows,
)
from xreal_bench.metrics.prdc import prdc_rows
from xreal_bench.metrics.vendi import vendi_rows

if TYPE_CHECKING:
    from xreal_bench.metrics.context import ResultRow, ScoringContext, Subset

Direction = Literal["lower", "higher"]
Family = Literal["distribution", "fidelity", "anatomy", "pathology", "diversity", "memorization", "adherence"]
#: Evaluator roles. Feature roles: ``features`` (Inception, ``fid``), ``domain_features`` (torchxrayvision,
#: ``fid_xrv``), ``dinov2``, ``raddino``, ``clip``; ``embedding`` stands for the feature role named by
#: ``metrics.embedding`` (PRDC, Vendi, memorization; DINOv2 by default).
Role = Literal["features", "domain_features", "dinov2", "raddino", "clip", "embedding", "segmenter", "classifier"]
FEATURE_ROLES: tuple[str, ...] = ("features", "domain_features", "dinov2", "raddino", "clip")
EMBEDDING: Role = "embedding"
PixelPass = Literal["paired", "diversity"]
Unit = Literal["images", "cases"]
Resamples = Literal["bootstrap", "fid_bootstrap"]
Compute = Callable[["ScoringContext", "Metric", "Subset"], "list[ResultRow]"]


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One metric (or a component row of one) and everything the suite needs to know about it."""

    name: str
    direction: Direction
    family: Family
    display: str  # for figures
    latex: str  # for LaTeX tables
    n_unit: Unit  # what ``n`` of its overall row counts
    role: Role | None = None  # evaluator it needs; None: pixels only
    pixels: PixelPass | None = None  # pixel metrics: what the evaluation pass computes
    ci: Resamples | None = "bootstrap"  # the [metrics] setting holding its CI's resamples; None: no CI
    per_subset: bool = False  # rows per pathology subset as well as ``all``
    per_subgroup: bool = True  # rows per demographic subgroup (sex, age band, race) and their fairness gaps
    #: Its value moves with the sample size (Fréchet distances, CMMD's biased MMD², k-NN manifolds, Vendi): subgroups of
    #: different sizes are not compared by a fairness gap (it would measure their sizes), their rows say so.
    size_biased: bool = False
    pathology_table: bool = False  # a per-pathology table and heatmap in the reports
    headline: bool = False  # a leaderboard column
    main_column: int = 0  # its column in the paper's main table (Table I), 1 = first; 0: not there
    default: bool = False  # in the default ``metrics.enabled``
    thresholds: bool = False  # needs classification decision thresholds
    ranks: bool = False  # the leaderboard orders generators by it
    per_class: str = ""  # prefix of its per-class rows (``f1`` -> ``f1/<label>``)
    output_key: str = ""  # a part: the key of its metric's per-image output it reports ("" = name)
    undefined: str = ""  # why a per-image value can be undefined (NaN: excluded and counted in the row's note)
    parts: tuple[Metric, ...] = ()  # component rows its compute function also returns (not selectable)
    compute: Compute | None = None  # None for parts

    @property
    def arrow(self) -> str:
        return "↓" if self.direction == "lower" else "↑"

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lower"

    @property
    def key(self) -> str:
        """Key of its per-image values in the evaluation pass's output."""
        return self.output_key or self.name


#: Named because the Dice code keys the per-image mean over structures by its name.
DICE = Metric(
    name="dice",
    direction="higher",
    family="anatomy",
    display="Dice",
    latex="Dice",
    n_unit="cases",
    role="segmenter",
    per_subset=True,
    pathology_table=True,
    headline=True,
    main_column=4,
    undefined="both masks empty",
    default=True,
    parts=tuple(
        Metric(
            name=name,
            direction="higher",
            family="anatomy",
            display=display,
            latex=latex,
            n_unit="cases",
            role="segmenter",
            per_subset=True,
            headline=True,
            output_key=structure,
            undefined="both masks empty",
        )
        for name, structure, display, latex in (
            ("dice_lungs", "lungs", "Dice lungs", "Dice\\textsubscript{lungs}"),
            ("dice_heart", "heart", "Dice heart", "Dice\\textsubscript{heart}"),
            ("dice_aorta", "aorta", "Dice aorta", "Dice\\textsubscript{aorta}"),
        )
    ),
    compute=dice_rows,
)


def fd(name: str, role: Role, display: str, latex: str) -> Metric:
    """A Fréchet distance on one encoder's features (one function over any encoder's streaming statistics)."""
    return Metric(
        name=name,
        direction="lower",
        family="distribution",
        display=display,
        latex=latex,
        n_unit="images",
        role=role,
        ci="fid_bootstrap",
        per_subset=True,
        size_biased=True,
        compute=frechet_rows,
    )


def prdc(name: str, direction: Direction, display: str, latex: str, *, value: str) -> Metric:
    """One of Naeem et al.'s (2020) k-NN manifold metrics on the ``embedding`` features (``value``: which)."""
    return Metric(
        name=name,
        output_key=value,
        direction=direction,
        family="distribution",
        display=display,
        latex=latex,
        n_unit="images",
        role=EMBEDDING,
        size_biased=True,
        compute=prdc_rows,
    )


def memorization_part(name: str, direction: Direction, display: str, latex: str) -> Metric:
    return Metric(
        name=name, direction=direction, family="memorization", display=display, latex=latex, n_unit="cases", role=EMBEDDING
    )


#: Why a lesion-adherence value can be undefined.
NO_EVIDENCE = "no annotated box, an all-zero evidence map, or (laterality) a box in neither lung or no anatomy"


def adherence_part(name: str, display: str, latex: str) -> Metric:
    return Metric(
        name=name,
        direction="higher",
        family="adherence",
        display=display,
        latex=latex,
        n_unit="cases",
        role="classifier",
        undefined=NO_EVIDENCE,
    )


#: Memorization audit: per generated image, cosine similarity to its nearest training images (the
#: ``embedding`` features of ``dataset.train_split``); the rate counts images above the null's quantile.
MEMORIZATION = Metric(
    name="memorization_rate",
    direction="lower",
    family="memorization",
    display="Memorization rate",
    latex="Mem.\\ rate",
    n_unit="cases",
    role=EMBEDDING,
    parts=(
        memorization_part("memorization_similarity", "lower", "NN similarity", "NN sim."),
        memorization_part("memorization_ssim", "lower", "NN SSIM (aligned)", "NN SSIM"),
    ),
    compute=per_image_rows,
)

#: Lesion-in-box adherence: the classifier's Grad-CAM evidence for the box's label on the image.
LESION = Metric(
    name="lesion_in_box",
    direction="higher",
    family="adherence",
    display="Evidence in box",
    latex="In-box",
    n_unit="cases",
    role="classifier",
    undefined=NO_EVIDENCE,
    parts=(
        adherence_part("pointing_game", "Pointing game", "Pointing"),
        adherence_part("lesion_laterality", "Laterality", "Laterality"),
    ),
    compute=per_image_rows,
)

#: The selectable metrics (``metrics.enabled``), in column order; parts come before their metric.
METRICS: tuple[Metric, ...] = (
    Metric(
        name="fid",
        direction="lower",
        family="distribution",
        display="FID",
        latex="FID",
        n_unit="images",
        role="features",
        ci="fid_bootstrap",
        per_subset=True,
        pathology_table=True,
        headline=True,
        main_column=2,
        default=True,
        ranks=True,
        size_biased=True,
        compute=frechet_rows,
    ),
    Metric(
        name="fid_xrv",
        direction="lower",
        family="distribution",
        display="FID (XRV)",
        latex="FID\\textsubscript{XRV}",
        n_unit="images",
        role="domain_features",
        ci="fid_bootstrap",
        per_subset=True,
        headline=True,
        main_column=3,
        default=True,
        size_biased=True,
        compute=frechet_rows,
    ),
    Metric(
        name="kid",
        direction="lower",
        family="distribution",
        display="KID",
        latex="KID",
        n_unit="images",
        role="features",
        ci="fid_bootstrap",
        per_subset=True,
        headline=True,
        compute=kid_rows,
    ),
    fd("fd_dinov2", "dinov2", "FD (DINOv2)", "FD\\textsubscript{DINOv2}"),
    fd("fd_raddino", "raddino", "FD (RAD-DINO)", "FD\\textsubscript{RAD-DINO}"),
    Metric(
        name="cmmd",
        direction="lower",
        family="distribution",
        display="CMMD",
        latex="CMMD",
        n_unit="images",
        role="clip",
        ci="fid_bootstrap",
        per_subset=True,
        size_biased=True,
        compute=cmmd_rows,
    ),
    prdc("prdc_precision", "higher", "Precision", "Prec.", value="precision"),
    prdc("prdc_recall", "higher", "Recall", "Rec.", value="recall"),
    prdc("prdc_density", "higher", "Density", "Dens.", value="density"),
    prdc("prdc_coverage", "higher", "Coverage", "Cov.", value="coverage"),
    Metric(
        name="ms_ssim",
        direction="higher",
        family="fidelity",
        display="MS-SSIM",
        latex="MS-SSIM",
        n_unit="cases",
        pixels="paired",
        per_subset=True,
        pathology_table=True,
        headline=True,
        main_column=1,
        default=True,
        compute=paired_ms_ssim_rows,
    ),
    Metric(
        name="ms_ssim_diversity",
        direction="lower",
        family="diversity",
        display="MS-SSIM diversity",
        latex="MS-SSIM\\textsubscript{div}",
        n_unit="cases",
        pixels="diversity",
        headline=True,
        default=True,
        compute=diversity_rows,
    ),
    Metric(
        name="vendi",
        direction="higher",
        family="diversity",
        display="Vendi",
        latex="Vendi",
        n_unit="images",
        role=EMBEDDING,
        ci="fid_bootstrap",  # a d x d eigen-decomposition per resample (~0.1 s at d = 1024): the feature distances' budget
        size_biased=True,
        compute=vendi_rows,
    ),
    DICE,
    Metric(
        name="f1_macro",
        direction="higher",
        family="pathology",
        display="F1 (macro)",
        latex="F1",
        n_unit="cases",
        role="classifier",
        headline=True,
        main_column=5,
        default=True,
        thresholds=True,
        per_class="f1",
        compute=f1_rows,
    ),
    Metric(
        name="auc_macro",
        direction="higher",
        family="pathology",
        display="AUC (macro)",
        latex="AUC",
        n_unit="cases",
        role="classifier",
        headline=True,
        main_column=6,
        default=True,
        per_class="auc",
        compute=auc_rows,
    ),
    MEMORIZATION,
    LESION,
)


def rows() -> tuple[Metric, ...]:
    """Every entry that names result rows, in column order (a metric's parts just before it)."""
    return tuple(row for m in METRICS for row in (*m.parts, m))


def selectable_names() -> tuple[str, ...]:
    return tuple(m.name for m in METRICS)


def default_enabled() -> list[str]:
    return [m.name for m in METRICS if m.default]


def metric(name: str) -> Metric:
    """The entry named ``name`` (a selectable metric or a part)."""
    for m in rows():
        if m.name == name:
            return m
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(m.name for m in rows())}")


def row_metric(row_name: str) -> Metric:
    """The entry behind a result row's metric name (``dice_heart`` -> its part, ``auc/Edema`` -> ``auc_macro``)."""
    prefix, sep, _ = row_name.partition("/")
    if sep:
        for m in METRICS:
            if m.per_class and m.per_class == prefix:
                return m
    return metric(row_name)


def per_class_prefixes() -> tuple[str, ...]:
    """Prefixes of per-class row names (``f1/``, ``auc/``)."""
    return tuple(f"{m.per_class}/" for m in METRICS if m.per_class)


def enabled(names: Iterable[str]) -> tuple[Metric, ...]:
    """The selectable entries among ``names``, in table order."""
    wanted = set(names)
    return tuple(m for m in METRICS if m.name in wanted)


def roles(names: Iterable[str]) -> set[str]:
    """Evaluator roles the enabled metrics need (``embedding`` as itself: see :func:`suite.resolve_role`)."""
    return {m.role for m in enabled(names) if m.role is not None}


def frechet_distances() -> tuple[Metric, ...]:
    """The Fréchet distances, one per encoder (the encoder-agreement pairs)."""
    return tuple(m for m in METRICS if m.compute is frechet_rows)


def pixel_passes(names: Iterable[str]) -> set[str]:
    """Pixel computations the evaluation pass must make for the enabled metrics."""
    return {m.pixels for m in enabled(names) if m.pixels is not None}


def needs_thresholds(names: Iterable[str]) -> bool:
    return any(m.thresholds for m in enabled(names))


def headline() -> tuple[Metric, ...]:
    """Leaderboard columns, in order."""
    return tuple(m for m in rows() if m.headline)


def main_table() -> tuple[Metric, ...]:
    """Columns of the paper's main table, in its order (MS-SSIM, FID, FID-XRV, Dice, F1, AUC as XReal's Table I)."""
    return tuple(sorted((m for m in rows() if m.main_column), key=lambda m: m.main_column))


def pathology_tables() -> tuple[Metric, ...]:
    """Metrics with a per-pathology table and heatmap."""
    return tuple(m for m in rows() if m.pathology_table)


def ranking() -> Metric:
    """The metric the leaderboard orders generators by."""
    return next(m for m in rows() if m.ranks)
