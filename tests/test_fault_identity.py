"""A run directory knows what made it: a changed identity field refuses resume and evaluate before
any work, naming the field; --overwrite regenerates; more samples extend a run. Hostile generator
names and --overwrite never delete anything outside the run's own generator folders."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from xreal_bench.cli import main
from xreal_bench.config import GeneratorConfig, config_from_dict, load_config
from xreal_bench.coverage import Plan, select_planned
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import Generator
from xreal_bench.generators.registry import register_generator
from xreal_bench.harness import check_before_generation, run_generator
from xreal_bench.identity import IdentityError, check_generation_dir, check_generator_dirs
from xreal_bench.imaging import quantize, save_png
from xreal_bench.names import InvalidNameError
from xreal_bench.rundir import GeneratorDir, ManifestEntry, append_line, generator_dirs
from xreal_bench.types import Case, Condition
from xreal_bench.weights import Artifact, WeightsManager


@dataclass
class LevelOptions:
    level: float = 0.5


@register_generator
class LabelLevel(Generator):
    """Reads labels: a flat image at ``level`` plus seeded noise and 0.05 per positive pathology."""

    type_name = "test-identity-labels"
    inputs = frozenset({"labels"})
    Options = LevelOptions

    def generate(self, conditions):
        out = []
        for c in conditions:
            rng = np.random.default_rng(c.seed)
            base = self.options.level + 0.05 * sum(v == 1 for v in c.labels)
            out.append(np.clip(base + rng.normal(0, 0.05, (40, 40)), 0, 1).astype(np.float32))
        return out


WEIGHTED = Artifact("test-identity-weights", "test-identity.bin", "made by the test", "none", "a toy weight file")


@register_generator
class Weighted(Generator):
    type_name = "test-identity-weighted"
    artifacts = (WEIGHTED,)

    def generate(self, conditions):  # pragma: no cover - identity only
        raise AssertionError("not called")


def write_config(path: Path, data: Path, out: Path, generators: str = '[generators.g]\ntype = "test-identity-labels"\n') -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            [dataset]
            kind = "synthetic"
            root = "{data}"
            [dataset.synthetic]
            n_subjects = 8
            image_size = 64
            [conditioning]
            anatomy = "none"
            [run]
            out = "{out}"
            resolution = 161
            batch_size = 16
            """
        )
        + generators
    )
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """A finished run (4 cases, 1 sample each) and its config; tests copy the run."""
    root = tmp_path_factory.mktemp("identity")
    config = write_config(root / "bench.toml", root / "data", root / "run")
    assert main(["generate", "--config", str(config), "--quiet"]) == 0
    return config, root / "run"


@pytest.fixture
def run(base, tmp_path) -> tuple[Path, Path]:
    config, original = base
    copy = tmp_path / "run"
    shutil.copytree(original, copy, symlinks=True)
    return config, copy


def snapshot(out: Path) -> dict[str, tuple[str, int]]:
    """Every file of the generator folder: sha256 and mtime_ns (so 'untouched' means untouched)."""
    root = out / "g"
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "generate.log"
    }


def cli(*argv: str) -> int:
    return main([*argv, "--quiet"])


FIELDS = [
    ("run.seed=5", "  run.seed: 0 -> 5"),
    ("generators.g.level=0.25", "  generators.g.level: 0.5 -> 0.25"),
    ("run.resolution=192", "  run.resolution: 161 -> 192"),
    ("run.bit_depth=16", "  run.bit_depth: 8 -> 16"),
    ('dataset.square="pad"', '  dataset.square: "crop" -> "pad"'),
    ('dataset.label_policy.uncertain="ignore"', '  dataset.label_policy.uncertain: 0 -> "ignore"'),
    ('conditioning.prompt_separator=" | "', '  conditioning.prompt_separator: ", " -> " | "'),
]


@pytest.mark.parametrize(("change", "line"), FIELDS, ids=[f[0].partition("=")[0] for f in FIELDS])
def test_changed_field_refuses_resume_and_evaluate_until_overwrite(run, capsys, change, line):
    config, out = run
    before = snapshot(out)
    assert cli("generate", "--config", str(config), "--out", str(out), "--set", change) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 problem(s) found before any work")  # preflight: before any image
    assert f"{out / 'g'} was generated with a different identity than this config asks for:\n   {line}\n" in err
    assert len([x for x in err.splitlines() if " -> " in x]) == 1  # only the changed field is named
    assert "Nothing was generated" in err and "--overwrite" in err and "run.out" in err
    assert snapshot(out) == before  # nothing regenerated, deleted or rewritten

    assert cli("evaluate", "--config", str(config), "--out", str(out), "--set", change) == 2
    err = capsys.readouterr().err
    assert f"{out / 'g'} was made with a different identity than this config" in err and f"\n   {line}\n" in err
    assert "Traceback" not in err and snapshot(out) == before

    assert cli("generate", "--config", str(config), "--out", str(out), "--set", change, "--overwrite") == 0
    assert "g: 4 generated, 0 already done, 0 failed of 4" in capsys.readouterr().out
    recorded = json.loads((out / "g" / "identity.json").read_text())["fields"]
    assert recorded[change.partition("=")[0]] == json.loads(line.split(" -> ")[1])
    check_generator_dirs(load_config(config, [change, f'run.out="{out}"']), generator_dirs(out), weights=None)  # now consistent


def test_more_samples_extend_the_run_without_regenerating(run, capsys):
    config, out = run
    before = snapshot(out)
    assert cli("generate", "--config", str(config), "--out", str(out), "--set", "run.samples_per_condition=2") == 0
    assert "g: 4 generated, 4 already done, 0 failed of 8" in capsys.readouterr().out
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k.startswith("images/")} == {
        **{k: v for k, v in before.items() if k.startswith("images/")},
        **{k: after[k] for k in after if k.endswith("_1.png")},
    }
    assert after["identity.json"] == before["identity.json"]
    gdir = GeneratorDir(out, "g")
    cases = sorted({k[0] for k in gdir.entries()})
    assert len(select_planned(gdir, Plan.of(cases, 2)).scorable) == 8
    one = select_planned(gdir, Plan.of(cases, 1))  # only what a 1-sample config asks for
    assert [e.key for e in one.scorable] == [(c, 0) for c in cases] and one.ignored == 4
    assert [e.key for e in select_planned(gdir, Plan.of(cases[:2], 2)).scorable] == [(c, k) for c in cases[:2] for k in (0, 1)]


def test_settings_outside_the_identity_resume(run, capsys):
    config, out = run
    before = snapshot(out)
    changes = ["run.batch_size=3", 'conditioning.report_section="findings"', "metrics.bootstrap=10"]  # g reads no text
    assert cli("generate", "--config", str(config), "--out", str(out), *sum((["--set", c] for c in changes), [])) == 0
    assert "g: 0 generated, 4 already done" in capsys.readouterr().out
    after = snapshot(out)
    after["manifest.jsonl"] = (after["manifest.jsonl"][0], before["manifest.jsonl"][1])  # consolidated: same bytes
    assert after == before


def test_second_generators_mismatch_refuses_before_the_first_generates(tmp_path, base, capsys):
    config, _ = base
    data = Path(load_config(config).dataset.root)
    two = '[generators.g]\ntype = "test-identity-labels"\n[generators.h]\ntype = "test-identity-labels"\n'
    both = write_config(tmp_path / "two.toml", data, tmp_path / "run", two)
    assert cli("generate", "--config", str(both)) == 0
    for png in (tmp_path / "run" / "g" / "images").glob("*.png"):
        png.unlink()  # g would have work to do
    assert cli("generate", "--config", str(both), "--set", "generators.h.level=0.3") == 2
    assert "generators.h.level: 0.5 -> 0.3" in capsys.readouterr().err
    assert not list((tmp_path / "run" / "g" / "images").glob("*.png"))  # g did not run


def test_folder_without_identity_is_not_trusted(run, capsys):
    config, out = run
    (out / "g" / "identity.json").unlink()
    before = snapshot(out)
    assert cli("generate", "--config", str(config), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{out / 'g'} has images or a manifest but no identity.json (made by an older xreal-bench or by hand)" in err
    assert snapshot(out) == before
    assert cli("evaluate", "--config", str(config), "--out", str(out)) == 2
    assert "no identity.json" in capsys.readouterr().err
    assert cli("generate", "--config", str(config), "--out", str(out), "--overwrite") == 0  # ours (manifest of g): replaced
    assert "g: 4 generated, 0 already done" in capsys.readouterr().out
    assert (out / "g" / "identity.json").is_file()


@pytest.mark.parametrize("content", ["{not json", '{"type": "generated"}', '["a list"]', '{"type": "mine", "fields": {}}'])
def test_damaged_identity_file_is_refused_by_name(run, capsys, content):
    config, out = run
    (out / "g" / "identity.json").write_text(content)
    before = snapshot(out)
    assert cli("generate", "--config", str(config), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"1. {out / 'g' / 'identity.json'} is unreadable (" in err and "--overwrite" in err and "Traceback" not in err
    assert snapshot(out) == before
    assert cli("generate", "--config", str(config), "--out", str(out), "--overwrite") == 0


def test_unconfigured_folder_is_checked_on_the_run_fields(run):
    config, out = run
    cfg = load_config(config, [f'run.out="{out}"'])
    cfg.generators = {}
    check_generator_dirs(cfg, generator_dirs(out), weights=None)  # same run fields: fine
    cfg.run.bit_depth = 16
    with pytest.raises(IdentityError, match=r"run.bit_depth: 8 -> 16"):
        check_generator_dirs(cfg, generator_dirs(out), weights=None)


def test_changed_weights_refuse_and_absent_weights_are_not_compared(tmp_path):
    cfg = config_from_dict({"run": {"out": str(tmp_path / "run")}, "generators": {"w": {"type": "test-identity-weighted"}}})
    weights = WeightsManager(tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "test-identity.bin").write_bytes(b"first weights")
    identity = check_generation_dir(cfg, "w", cfg.generators["w"], weights=weights)
    first = hashlib.sha256(b"first weights").hexdigest()
    assert identity is not None and identity["fields"]["weights.test-identity-weights"] == first
    from xreal_bench.identity import write_identity

    write_identity(GeneratorDir(cfg.run.out, "w"), identity)
    (tmp_path / "weights" / "test-identity.bin").write_bytes(b"other weights, other size")
    second = hashlib.sha256(b"other weights, other size").hexdigest()
    with pytest.raises(IdentityError, match=f'weights.test-identity-weights: "{first}" -> "{second}"'):
        check_generation_dir(cfg, "w", cfg.generators["w"], weights=weights)
    (tmp_path / "weights" / "test-identity.bin").unlink()  # e.g. evaluating on a machine without them
    assert check_generation_dir(cfg, "w", cfg.generators["w"], weights=weights) is None


# --- hostile names and --overwrite -------------------------------------------------------------


class Builder:
    available = frozenset({"labels", "image"})

    def build(self, case: Case, sample_index: int, seed: int, *, reads=None) -> Condition:
        return Condition(case.case_id, sample_index, seed, case.labels, "", "", case.image_path, case.view)


@pytest.fixture
def project(tmp_path) -> tuple[Path, list[Case]]:
    """A project folder with a run inside; sentinel files in the project, the run and beside it."""
    save_png(tmp_path / "data" / "c0.png", quantize(np.full((32, 32), 0.4, np.float32)))
    cases = [Case("c0", tmp_path / "data" / "c0.png", "10000000", "50000000", "PA", (0,) * 14)]
    for sentinel in ("project/sentinel.txt", "project/run/keep.txt", "project/x/identity.json", "outside/identity.json"):
        (tmp_path / sentinel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / sentinel).write_text("must survive")
    return tmp_path, cases


def survivors(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.*") if p.parent.name != "data")


@pytest.mark.parametrize(
    ("name", "gen_type", "message"),
    [
        ("..", "noise", "generator name '..' is not a valid name"),
        ("", "noise", "generator name '' is not a valid name"),
        (".", "noise", "generator name '.' is not a valid name"),
        ("../x", "noise", "generator name '../x' is not a valid name"),
        ("/tmp", "noise", "generator name '/tmp' is not a valid name"),
        ("real", "noise", "generator name 'real' is reserved for the real test images (type 'real')"),
    ],
)
def test_hostile_generator_names_delete_and_write_nothing(project, name, gen_type, message):
    root, cases = project
    cfg = config_from_dict({"run": {"out": str(root / "project" / "run")}})
    cfg.generators = {name: GeneratorConfig(type=gen_type)}  # as an API caller could, past config validation
    before = survivors(root)
    with pytest.raises(InvalidNameError, match=re.escape(message)):
        run_generator(cfg, name, cfg.generators[name], cases=cases, prepared=Builder(), overwrite=True, progress=False)
    with pytest.raises(UserFacingError, match=re.escape(message)):
        check_before_generation(cfg, cfg.generators, weights=None, overwrite=True)
    assert survivors(root) == before
    if name != "real":  # the folder class itself refuses the name too
        with pytest.raises(InvalidNameError, match="generator folder name"):
            GeneratorDir(cfg.run.out, name)


def test_real_is_generated_only_by_the_real_generator(project):
    root, cases = project
    cfg = config_from_dict({"run": {"out": str(root / "run"), "resolution": 161}, "generators": {"real": {}}})
    summary = run_generator(cfg, "real", cfg.generators["real"], cases=cases, prepared=Builder(), progress=False)
    assert summary.generated == 1 and (root / "run" / "real" / "identity.json").is_file()


def test_overwrite_refuses_a_symlinked_generator_folder(project):
    root, cases = project
    run_dir = root / "project" / "run"
    (run_dir / "g").symlink_to(root / "outside", target_is_directory=True)  # outside has an identity.json
    cfg = config_from_dict(
        {"run": {"out": str(run_dir), "resolution": 161}, "generators": {"g": {"type": "test-identity-labels"}}}
    )
    before = survivors(root)
    message = f"--overwrite: {run_dir / 'g'} is a symbolic link (to {root / 'outside'}); not deleted"
    with pytest.raises(UserFacingError, match=re.escape(message)):
        check_before_generation(cfg, cfg.generators, weights=None, overwrite=True)
    with pytest.raises(UserFacingError, match="is a symbolic link"):
        run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=Builder(), overwrite=True, progress=False)
    assert survivors(root) == before and (root / "outside" / "identity.json").read_text() == "must survive"


def test_overwrite_refuses_folders_the_suite_did_not_make(project):
    root, cases = project
    run_dir = root / "project" / "run"
    cfg = config_from_dict(
        {"run": {"out": str(run_dir), "resolution": 161}, "generators": {"g": {"type": "test-identity-labels"}}}
    )
    mine = run_dir / "g"
    (mine / "images").mkdir(parents=True)
    (mine / "images" / "photo.png").write_bytes(b"user's file")
    (mine / "notes.txt").write_text("user's notes")
    with pytest.raises(UserFacingError, match="was not made by xreal-bench"):
        run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=Builder(), overwrite=True, progress=False)
    with pytest.raises(IdentityError, match="no identity.json"):  # without --overwrite: not trusted either
        run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=Builder(), progress=False)
    entry = ManifestEntry(generator="someone-else", case_id="c0", sample_index=0, seed=0, status="ok", file="images/photo.png")
    append_line(mine / "manifest.jsonl", entry)  # a manifest, but not of generator g
    with pytest.raises(UserFacingError, match="was not made by xreal-bench"):
        check_before_generation(cfg, cfg.generators, weights=None, overwrite=True)
    assert (mine / "notes.txt").read_text() == "user's notes" and (mine / "images" / "photo.png").read_bytes() == b"user's file"


def test_overwrite_deletes_our_folder_but_never_follows_links_inside(project):
    root, cases = project
    run_dir = root / "project" / "run"
    cfg = config_from_dict(
        {"run": {"out": str(run_dir), "resolution": 161}, "generators": {"g": {"type": "test-identity-labels"}}}
    )
    run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=Builder(), progress=False)
    (run_dir / "g" / "images" / "elsewhere").symlink_to(root / "outside", target_is_directory=True)
    (run_dir / "g" / "stray.txt").write_text("inside our folder: goes with it")
    summary = run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=Builder(), overwrite=True, progress=False)
    assert (summary.generated, summary.skipped) == (1, 0)
    assert not (run_dir / "g" / "stray.txt").exists() and not (run_dir / "g" / "images" / "elsewhere").exists()
    assert (root / "outside" / "identity.json").read_text() == "must survive"
    assert (run_dir / "keep.txt").exists() and (root / "project" / "sentinel.txt").exists()


def test_results_provenance_gives_each_recorded_generator_weight_its_status(tmp_path):
    from xreal_bench.evaluation import generator_provenance
    from xreal_bench.identity import write_identity

    published = Artifact(name="pub", path="p.bin", source="s", license="l", description="d", sha256="1" * 64)
    private = Artifact(name="own", path="o.bin", source="s", license="l", description="d")
    manager = WeightsManager(tmp_path / "w", {"pub": published, "own": private})
    gdir = GeneratorDir(tmp_path, "g")
    gdir.root.mkdir()
    fields = {"weights.pub": "1" * 64, "weights.own": "2" * 64, "weights.gone": "absent"}
    write_identity(gdir, {"format": 1, "type": "generated", "generator": "g", "inputs": [], "fields": fields})
    record = generator_provenance(gdir, manager)
    assert record["identity"]["fields"] == fields
    assert record["weights"] == {
        "pub": {"sha256": "1" * 64, "status": "verified"},
        "own": {"sha256": "2" * 64, "status": "unverified (no published hash)"},
        "gone": {"sha256": None, "status": "absent"},
    }


def test_an_identity_older_than_a_later_field_counts_as_its_earlier_value(run, capsys):
    config, out = run
    path = out / "g" / "identity.json"
    record = json.loads(path.read_text())
    del record["fields"]["dataset.intensity"]  # written before [dataset].intensity existed
    path.write_text(json.dumps(record))
    assert cli("generate", "--config", str(config), "--out", str(out)) == 0
    assert "g: 0 generated, 4 already done" in capsys.readouterr().out
    assert cli("generate", "--config", str(config), "--out", str(out), "--set", 'dataset.intensity="minmax"') == 2
    assert '  dataset.intensity: "none" -> "minmax"' in capsys.readouterr().err
