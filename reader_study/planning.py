"""Sample size for an MRMC ROC study: power of the Obuchowski-Rockette test for readers x cases.

Hillis, Obuchowski & Berbaum (2011): with pilot OR components estimated on ``K*`` cases, a study
with ``J`` readers and ``K`` cases has error (co)variances scaled by ``K*/K``, and the test
statistic follows a non-central F with Hillis' denominator degrees of freedom.

- Difference of two treatments' AUCs by ``d`` (random readers and cases)::

      den = max(Var(TR), 0) + K*/K [Var(e) - Cov1 + (J - 1) max(Cov2 - Cov3, 0)]
      ncp = J d^2 / (2 den),  ddf = den^2 (J - 1) / (max(Var(TR), 0) + K*/K [Var(e) - Cov1 - max(Cov2 - Cov3, 0)])^2

- One treatment's AUC against a fixed value (e.g. 0.5: readers cannot tell generated from real),
  ``d`` = AUC - null, the same derivation for the single-treatment statistic::

      den = max(Var(R), 0) + K*/K [Var(e) + (J - 1) max(Cov2, 0)]
      ncp = J d^2 / den,  ddf = den^2 (J - 1) / (max(Var(R), 0) + K*/K [Var(e) - max(Cov2, 0)])^2

Power = P(F'(1, ddf, ncp) > F_{1-alpha}(1, ddf)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from xreal_bench.errors import UserFacingError

Test = Literal["difference", "auc"]


@dataclass(frozen=True)
class PilotComponents:
    """OR components from a pilot study of ``n_cases`` cases (the ones a test does not use may be NaN)."""

    n_cases: int
    var_error: float
    cov2: float
    cov1: float = np.nan
    cov3: float = np.nan
    var_tr: float = np.nan
    var_r: float = np.nan

    def needed(self, test: Test) -> list[str]:
        """The names of components ``test`` needs that are missing (NaN)."""
        names = ["var_error", "cov2", *(("cov1", "cov3", "var_tr") if test == "difference" else ("var_r",))]
        return [name for name in names if np.isnan(getattr(self, name))]


@dataclass(frozen=True)
class Power:
    readers: int
    cases: int
    power: float
    ncp: float
    ddf: float


def power(
    pilot: PilotComponents, *, test: Test, readers: int, cases: np.ndarray | int, effect: float, alpha: float = 0.05
) -> list[Power]:
    """Power of ``test`` for ``readers`` readers and each number of ``cases``."""
    if readers < 2:
        raise ValueError("random readers need at least two readers")
    missing = pilot.needed(test)
    if missing:
        raise ValueError(f"the {test} test needs the components {missing}")
    k = np.atleast_1d(np.asarray(cases, dtype=float))
    scale = pilot.n_cases / k
    if test == "difference":
        reader_part = max(pilot.var_tr, 0.0)
        shared = max(pilot.cov2 - pilot.cov3, 0.0)
        den = reader_part + scale * (pilot.var_error - pilot.cov1 + (readers - 1) * shared)
        ms = reader_part + scale * (pilot.var_error - pilot.cov1 - shared)
        ncp = readers * effect**2 / (2 * den)
    else:
        reader_part = max(pilot.var_r, 0.0)
        shared = max(pilot.cov2, 0.0)
        den = reader_part + scale * (pilot.var_error + (readers - 1) * shared)
        ms = reader_part + scale * (pilot.var_error - shared)
        ncp = readers * effect**2 / den
    with np.errstate(divide="ignore"):
        ddf = den**2 * (readers - 1) / ms**2
    if np.any(den <= 0):
        raise ValueError("the components give a non-positive variance of the mean AUC: check that Var(error) > Cov1 and Cov2")
    finite = np.isfinite(ddf)  # infinite ddf (no reader-level variance left): the non-central chi-square limit
    safe_ddf = np.where(finite, ddf, 1.0)
    values = np.where(
        finite,
        stats.ncf.sf(stats.f.ppf(1 - alpha, 1, safe_ddf), 1, safe_ddf, ncp),
        stats.ncx2.sf(stats.chi2.ppf(1 - alpha, 1), 1, ncp),
    )
    return [Power(readers, int(c), float(p), float(n), float(d)) for c, p, n, d in zip(k, values, ncp, ddf)]


def cases_needed(
    pilot: PilotComponents, *, test: Test, readers: int, effect: float, target: float, alpha: float = 0.05, max_cases: int = 20000
) -> Power | None:
    """The smallest number of cases (2..``max_cases``) whose power reaches ``target``; None if none does."""
    grid = power(pilot, test=test, readers=readers, cases=np.arange(2, max_cases + 1), effect=effect, alpha=alpha)
    return next((p for p in grid if p.power >= target), None)


def power_table(
    pilot: PilotComponents,
    *,
    test: Test,
    readers: list[int],
    cases: list[int],
    effect: float,
    target: float,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Readers x cases -> power, with the cases each reader count needs for ``target`` power."""
    rows = []
    for j in readers:
        row: dict[str, object] = {"readers": j}
        for p in power(pilot, test=test, readers=j, cases=np.array(cases), effect=effect, alpha=alpha):
            row[f"{p.cases} cases"] = p.power
        needed = cases_needed(pilot, test=test, readers=j, effect=effect, target=target, alpha=alpha)
        row[f"cases for power {target:g}"] = needed.cases if needed else "more than 20000"
        rows.append(row)
    return pd.DataFrame(rows)


# -- pilot data --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pilot:
    """What a plan starts from: components, the test they are for and the effect the pilot saw (NaN if none)."""

    components: PilotComponents
    test: Test
    observed: float
    description: str


def pilot_from_study(study_dir: Path, *, generator: str | None = None, compare: Sequence[str] | None = None,
                     null_auc: float = 0.5) -> Pilot:  # fmt: skip
    """OR components of a study's real-or-generated block: one generator's AUC against ``null_auc``
    (``generator``) or two generators' difference (``compare``)."""
    from xreal_bench.reader_study.analysis import fit_generators, load_responses, turing_calls

    tidy, sources, _ = load_responses(study_dir)
    calls = turing_calls(tidy)
    generators = [s for s in sources if s != "real" and s in set(calls["source"])]
    if not generators:
        raise UserFacingError(f"{study_dir}: no real-or-generated answers to plan from")
    if compare is None and generator is None and len(generators) > 1:
        raise UserFacingError(f"name --generator or --compare A B (the study's generators: {', '.join(generators)})")
    chosen = list(compare) if compare is not None else [generator or generators[0]]
    unknown = [g for g in chosen if g not in generators]
    if unknown:
        raise UserFacingError(
            f"no real-or-generated answers for {', '.join(map(repr, unknown))} (the study's: {', '.join(generators)})"
        )
    try:
        result = fit_generators(calls, chosen, confidence=0.95)
    except ValueError as exc:
        raise UserFacingError(f"{study_dir}: {exc}") from None
    if len(result.fit.readers) < 2:
        raise UserFacingError(f"{study_dir}: a pilot needs at least two readers to estimate the reader variance")
    c, means = result.components, result.fit.auc.mean(axis=1)
    components = PilotComponents(result.fit.n_cases, c.var_error, c.cov2, c.cov1, c.cov3, c.var_tr, c.var_r)
    where = f"{len(result.fit.readers)} readers, {result.fit.n_cases} cases, {result.fit.method}"
    if compare is not None:
        return Pilot(components, "difference", float(means[0] - means[1]), f"AUC {chosen[0]} - {chosen[1]} ({where})")
    return Pilot(components, "auc", float(means[0] - null_auc), f"AUC of {chosen[0]} vs {null_auc:g} ({where})")


def pilot_from_components(components: PilotComponents) -> Pilot:
    """Stated components: Var(TR) given -> a difference of two AUCs; otherwise one AUC against a value."""
    test: Test = "difference" if not np.isnan(components.var_tr) else "auc"
    missing = components.needed(test)
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise UserFacingError(f"the {'difference' if test == 'difference' else 'single-AUC'} test also needs {flags}")
    covariances = {name: getattr(components, name) for name in ("cov1", "cov2", "cov3")}
    too_large = [
        f"--{name} {value:g}" for name, value in covariances.items() if not np.isnan(value) and value >= components.var_error
    ]
    if too_large:
        raise UserFacingError(
            f"a covariance must be smaller than --var-error {components.var_error:g} (it is a correlation times it): "
            + ", ".join(too_large)
        )
    return Pilot(components, test, np.nan, f"stated components from {components.n_cases} pilot cases")
