"""Config fuzzing: every malformed bench.toml and ``--set`` value, hand-written or generated, ends in
exit code 2 and exactly one ``config error:`` line naming the file or the ``--set``, the key and what
was expected — never a traceback. Runs `xreal-bench config check` in-process."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xreal_bench.cli import main
from xreal_bench.config import SECTION_KEYS, BenchConfig
from xreal_bench.names import NAME_RULE

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI cannot turn red by chance
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


def check_config(path: Path | None, sets: list[str] = ()) -> Outcome:
    """`xreal-bench config check --config PATH --set=...` in-process (``--set=`` keeps values starting with '-')."""
    argv = ["config", "check", *(["--config", str(path)] if path else []), *(f"--set={s}" for s in sets)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: must not happen for any of these inputs
            code = 1000 + int(exc.code or 0)
    return Outcome(code, out.getvalue(), err.getvalue())


def shown(text: str) -> str:
    """How a message shows ``text``: control characters escaped, one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def key_part(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


def assert_one_error(result: Outcome, source: str, key: str = "", fragment: str = "") -> str:
    """Exit 2, one line ``config error: SOURCE: KEY: ...FRAGMENT...``, no traceback; the line."""
    assert "Traceback" not in result.err
    assert result.code == 2, (result.code, result.err, result.out)
    assert len(result.lines) == 1, result.err
    line = result.lines[0]
    prefix = f"config error: {shown(source)}: " + (f"{shown(key)}: " if key else "")
    assert line.startswith(prefix), (line, prefix)
    assert fragment in line[len(prefix) :], (line, fragment)
    return line


# --------------------------------------------------------------------------------------------
# Hand-written hostile configs: (bench.toml text, --set values, blamed source, key, message fragment).
# source "FILE" stands for the config file's path.

FILE = "FILE"
NAME = f"expected {NAME_RULE}"

CASES: list[tuple[str, list[str], str, str, str]] = [
    # broken TOML
    ("[run\n", [], FILE, "", "not valid TOML (Expected ']' at the end of a table declaration (at line 1, column 5))"),
    ("[run]\nseed = 1\nseed = 2\n", [], FILE, "", "not valid TOML (Cannot overwrite a value (at line 3, column 9))"),
    ("a = " + "[" * 3000 + "]" * 3000 + "\n", [], FILE, "", "not valid TOML (arrays or tables nested too deeply)"),
    # sections
    ("[reports]\nformats = ['md']\n", [], FILE, "reports", "unknown section (known sections: dataset, conditioning,"),
    ("run = 1\n", [], FILE, "run", "expected a table, got an integer (1)"),
    ("generators = 3\n", [], FILE, "generators", "expected a table of [generators.<name>] tables, got an integer (3)"),
    # [run]
    ("[run]\nbatch_size = 0\n", [], FILE, "run.batch_size", "expected a positive integer, got 0"),
    ("[run]\nbatch_size = 'big'\n", [], FILE, "run.batch_size", "expected an integer, got a string ('big')"),
    ("[run]\nbatch_size = true\n", [], FILE, "run.batch_size", "expected an integer, got a boolean (True)"),
    ("[run]\nbatch_size = 2.0\n", [], FILE, "run.batch_size", "expected an integer, got a number (2.0)"),
    ("[run]\nbatchsize = 4\n", [], FILE, "run.batchsize", "unknown key (known keys: batch_size, bit_depth,"),
    ("[run]\nbatchsize = 4\n", [], FILE, "run.batchsize", "did you mean 'batch_size'?"),
    ("[run]\nseed = -1\n", [], FILE, "run.seed", "expected >= 0, got -1"),
    ("[run]\nseed = 9223372036854775808\n", [], FILE, "run.seed", "expected a 64-bit integer, got 9223372036854775808"),
    ("[run]\nresolution = 128\n", [], FILE, "run.resolution", "expected 161..4096 (MS-SSIM's five scales need more than 160"),
    ("[run]\nresolution = 4097\n", [], FILE, "run.resolution", "above 4096 exceeds MIMIC-CXR's native size), got 4097"),
    ("[run]\nresolution = 100000000\n", [], FILE, "run.resolution", "expected 161..4096"),
    ("[run]\nbit_depth = 12\n", [], FILE, "run.bit_depth", "expected one of 8, 16, got 12"),
    ("[run]\nprecision = 'fp64'\n", [], FILE, "run.precision", "expected one of 'fp32', 'fp16', 'bf16', got 'fp64'"),
    ("[run]\ndevice = 'cuda:x'\n", [], FILE, "run.device", "expected auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
    ("[run]\nout = ''\n", [], FILE, "run.out", "expected an output folder"),
    ("[run]\nout = 3\n", [], FILE, "run.out", "expected a string, got an integer (3)"),
    ('[run]\nout = "a\\u0000b"\n', [], FILE, "run.out", "expected a string without NUL characters, got 'a\\x00b'"),
    ("[run]\nsamples_per_condition = 0\n", [], FILE, "run.samples_per_condition", "expected >= 1, got 0"),
    ("[run]\nnum_cases = -5\n", [], FILE, "run.num_cases", "expected >= 0 (0 = all), got -5"),
    ('[run]\n"batch\\nsize" = 1\n', [], FILE, 'run."batch\\nsize"', "unknown key"),
    # [dataset]
    ("[dataset]\nkind = 'MIMIC'\n", [], FILE, "dataset.kind", "expected one of 'mimic', 'synthetic', got 'MIMIC'"),
    ("[dataset]\nviews = []\n", [], FILE, "dataset.views", "expected at least one view"),
    ("[dataset]\nviews = 'AP'\n", [], FILE, "dataset.views", "expected a list, got a string ('AP')"),
    ("[dataset]\nviews = [1]\n", [], FILE, "dataset.views[0]", "expected a string, got an integer (1)"),
    ("[dataset]\nroot = ''\n", [], FILE, "dataset.root", "expected the dataset root folder"),
    ("[dataset]\nlabel_policy = 'strict'\n", [], FILE, "dataset.label_policy", "expected a table, got a string ('strict')"),
    (
        "[dataset.label_policy]\nuncertain = 2\n",
        [],
        FILE,
        "dataset.label_policy.uncertain",
        "expected one of 0, 1, 'ignore', got 2",
    ),
    (
        "[dataset.label_policy]\nblank = true\n",
        [],
        FILE,
        "dataset.label_policy.blank",
        "expected one of 0, 1, 'ignore', got True",
    ),
    ("[dataset.synthetic]\nimage_size = 32\n", [], FILE, "dataset.synthetic.image_size", "expected 64..2048, got 32"),
    ("[dataset.synthetic]\nseed = -3\n", [], FILE, "dataset.synthetic.seed", "expected >= 0, got -3"),
    # [conditioning]
    ("[conditioning]\nresolution = 4096\n", [], FILE, "conditioning.resolution", "expected 64..2048, got 4096"),
    ("[conditioning]\nanatomy = 'auto'\n", [], FILE, "conditioning.anatomy", "expected one of 'folder', 'pspnet', 'none'"),
    # [metrics]
    ("[metrics]\nenabled = ['fid', 'is']\n", [], FILE, "metrics.enabled[1]", "expected one of 'fid', 'fid_xrv',"),
    ("[metrics]\nenabled = 'fid'\n", [], FILE, "metrics.enabled", "expected a list, got a string ('fid')"),
    ("[metrics]\nconfidence = 1.5\n", [], FILE, "metrics.confidence", "expected a level in (0.5, 1), got 1.5"),
    ("[metrics]\nconfidence = nan\n", [], FILE, "metrics.confidence", "expected a finite number, got nan"),
    ("[metrics]\nfixed_threshold = -inf\n", [], FILE, "metrics.fixed_threshold", "expected a finite number, got -inf"),
    ("[metrics]\nbootstrap = -1\n", [], FILE, "metrics.bootstrap", "expected >= 0 resamples, got -1"),
    ("[metrics]\nlabel_set = ['Cardiomegally']\n", [], FILE, "metrics.label_set[0]", "expected 'classifier', 'xreal' or a"),
    ("[metrics]\nthreshold_split = 'test'\n", [], FILE, "metrics.threshold_split", "expected one of 'train', 'validate'"),
    ("[metrics]\nf1_zero_division = 0.5\n", [], FILE, "metrics.f1_zero_division", "expected one of 0, 1, got 0.5"),
    # [report], [weights]
    ("[report]\ndecimals = 9\n", [], FILE, "report.decimals", "expected 0..8, got 9"),
    ("[report]\nformats = ['pdf']\n", [], FILE, "report.formats[0]", "expected one of 'md', 'csv', 'tex', got 'pdf'"),
    ("[weights]\ndir = 5\n", [], FILE, "weights.dir", "expected a string, got an integer (5)"),
    ("[weights]\npath = 'x'\n", [], FILE, "weights.path", "unknown key (known keys: dir)"),
    # [study]: reader and generator names follow the name rule
    ("[study]\nreaders = ['..']\n", [], FILE, "study.readers[0]", f"expected a reader name of {NAME_RULE}, got '..'"),
    ("[study]\nreaders = ['ann', '../x']\n", [], FILE, "study.readers[1]", "got '../x'"),
    ("[study]\nreaders = ['']\n", [], FILE, "study.readers[0]", "expected a reader name of"),
    ("[study]\nreaders = ['a/b']\n", [], FILE, "study.readers[0]", "got 'a/b'"),
    ("[study]\nreaders = ['.hidden']\n", [], FILE, "study.readers[0]", "got '.hidden'"),
    ("[study]\nreaders = ['dr lee']\n", [], FILE, "study.readers[0]", "got 'dr lee'"),
    ("[study]\nreaders = []\n", [], FILE, "study.readers", "expected at least one reader name"),
    ("[study]\nreaders = ['ann', 'ann']\n", [], FILE, "study.readers", "reader names must be unique"),
    ("[study]\ngenerators = ['real']\n", [], FILE, "study.generators[0]", "'real' is the real images"),
    ("[study]\ngenerators = ['../x']\n", [], FILE, "study.generators[0]", f"expected a generator name of {NAME_RULE}"),
    ("[study]\ncriteria = ['Realism']\n", [], FILE, "study.criteria[0]", "expected a lower-case identifier"),
    ("[study]\nduplicate_fraction = 0.9\n", [], FILE, "study.duplicate_fraction", "expected 0..0.5, got 0.9"),
    ("[study.criterion_anchors]\nanatomy_realism = ['a']\n", [], FILE, "study.criterion_anchors.anatomy_realism", "expected 5"),
    # [generators.<name>]: names are names
    ("[generators.'..']\n", [], FILE, 'generators.".."', f"invalid generator name '..' (it names the run's folder): {NAME}"),
    ("[generators.'']\n", [], FILE, 'generators.""', "invalid generator name ''"),
    ("[generators.'../x']\n", [], FILE, 'generators."../x"', "invalid generator name '../x'"),
    ("[generators.'a/b']\n", [], FILE, 'generators."a/b"', "invalid generator name 'a/b'"),
    ("[generators.'.hidden']\n", [], FILE, 'generators.".hidden"', "invalid generator name '.hidden'"),
    ("[generators.real]\ntype = 'noise'\n", [], FILE, "generators.real.type", "the name 'real' is reserved for the real test"),
    ("[generators.a]\ntype = 'noise'\n[generators.A]\ntype = 'noise'\n", [], FILE, "generators.A", "case-insensitive"),
    ("[generators]\nnoise = 1\n", [], FILE, "generators.noise", "expected a table, got an integer (1)"),
    ("[generators.dalle]\n", [], FILE, "generators.dalle", "unknown generator 'dalle'; available: "),
    ("[generators.g]\ntype = 'dalle'\n", [], FILE, "generators.g.type", "unknown generator 'dalle'"),
    ("[generators.g]\ntype = 3\n", [], FILE, "generators.g.type", "expected a generator type name, got an integer (3)"),
    ("[generators.g]\ntype = 'noise'\ncontrast = 2.0\n", [], FILE, "generators.g.contrast", "expected 0..0.5, got 2.0"),
    ("[generators.g]\ntype = 'noise'\ncontrats = 0.1\n", [], FILE, "generators.g.contrats", "did you mean 'contrast'?"),
    ("[generators.g]\ntype = 'noise'\nenabled = 'yes'\n", [], FILE, "generators.g.enabled", "expected true or false"),
    ("[generators.real]\nbatch_size = -1\n", [], FILE, "generators.real.batch_size", "expected >= 0 (0 = run.batch_size)"),
    ("[generators.x]\ntype = 'xreal'\nguidance = 'high'\n", [], FILE, "generators.x.guidance", "expected a number"),
    ("[generators.x]\ntype = 'xreal'\nmode = 'turbo'\n", [], FILE, "generators.x.mode", "expected one of 'full',"),
    # --set: blamed on the command line, for every kind of error
    ("", ["run.batch_size=0"], "--set run.batch_size=0", "run.batch_size", "expected a positive integer, got 0"),
    ("", ["run.seed='x'"], "--set run.seed='x'", "run.seed", "expected an integer, got a string ('x')"),
    ("", ["run.seed=abc"], "--set run.seed=abc", "run.seed", "expected an integer, got a string ('abc')"),
    ("", ["run.seed="], "--set run.seed=", "run.seed", "expected an integer, got a string ('')"),
    ("", ["run.resolution=5000"], "--set run.resolution=5000", "run.resolution", "expected 161..4096"),
    ("", ["run.batchsize=4"], "--set run.batchsize=4", "run.batchsize", "unknown key"),
    ("", ["nope.x=1"], "--set nope.x=1", "nope", "unknown section"),
    ("", ["a..b=1"], "--set a..b=1", "a..b", "expected KEY.PATH=VALUE with no empty name between dots"),
    ("", ["=1"], "--set =1", "", "expected KEY.PATH=VALUE (the key before '=' is missing), e.g. --set run.batch_size=8"),
    ("", ["run.=3"], "--set run.=3", "run.", "expected KEY.PATH=VALUE with no empty name between dots"),
    ("", [".run=3"], "--set .run=3", ".run", "expected KEY.PATH=VALUE with no empty name between dots"),
    ("", ["run.seed"], "--set run.seed", "run.seed", "expected KEY.PATH=VALUE (no '=' found)"),
    ("", ["run.seed=1\n[run]"], "--set run.seed=1\n[run]", "run.seed", "expected an integer, got a string ('1\\n[run]')"),
    ("[run]\nseed = 1\n", ["run.seed.x=2"], "--set run.seed.x=2", "run.seed", "is an integer (1), not a table"),
    ("", ["generators=1"], "--set generators=1", "generators", "expected a table of [generators.<name>] tables"),
    ("", ["generators.new.contrast=0.1"], "--set generators.new.contrast=0.1", "generators.new", "unknown generator 'new'"),
    (
        "",
        ["generators.n.type='noise'", "generators.n.contrast=5"],
        "--set generators.n.contrast=5",
        "generators.n.contrast",
        "0..0.5",
    ),
    ("", ["generators.real.type='noise'"], "--set generators.real.type='noise'", "generators.real.type", "is reserved"),
    (
        "[generators.noise]\n",
        ["generators.noise.grid='x'"],
        "--set generators.noise.grid='x'",
        "generators.noise.grid",
        "integer",
    ),
    ("", ["study.readers=['../x']"], "--set study.readers=['../x']", "study.readers[0]", "got '../x'"),
    ("", ["metrics.enabled=['fid','nope']"], "--set metrics.enabled=['fid','nope']", "metrics.enabled[1]", "got 'nope'"),
    ("", ["dataset={root=''}"], "--set dataset={root=''}", "dataset.root", "expected the dataset root folder"),
    ("", ["metrics.confidence=nan"], "--set metrics.confidence=nan", "metrics.confidence", "expected a finite number, got nan"),
    # a cross-field check caused by an override: blamed on it, though the failing key is the file's
    (
        "[study.criterion_questions]\nanatomy_realism = 'Q?'\n",
        ["study.criteria=['x']"],
        "--set study.criteria=['x']",
        "study.criterion_questions.anatomy_realism",
        "not one of the study's criteria (x)",
    ),
    # the file's own error stays the file's, with or without unrelated overrides
    ("[run]\nseed = 'x'\n", ["run.batch_size=4"], FILE, "run.seed", "expected an integer"),
    ("[generators.g]\ntype = 'dalle'\n", ["generators.g.contrast=0.1"], FILE, "generators.g.type", "unknown generator 'dalle'"),
    ("[generators.g]\ncontrast = 5\n", ["generators.g.contrast=0.1"], FILE, "generators.g", "unknown generator 'g'"),
    # an override fixes the file's error and brings its own
    ("[run]\nbatch_size = 0\n", ["run.batch_size=4", "run.seed=-1"], "--set run.seed=-1", "run.seed", "expected >= 0, got -1"),
]


@pytest.mark.parametrize("text, sets, source, key, fragment", CASES)
def test_hand_written_hostile_configs(tmp_path, text, sets, source, key, fragment):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    result = check_config(path, sets)
    assert_one_error(result, str(path) if source == FILE else source, key, fragment)


def test_there_are_at_least_60_hand_written_cases():
    assert len(CASES) >= 60


def test_the_same_configs_without_the_error_pass(tmp_path):
    """Controls: the keys above accept good values, so each refusal is about the bad value."""
    path = tmp_path / "bench.toml"
    path.write_text(
        "[run]\nresolution = 4096\nseed = 0\ndevice = 'cuda:1'\n[study]\nreaders = ['dr_lee', 'R.2']\n"
        "[generators.real]\n[generators.my-noise]\ntype = 'noise'\ncontrast = 0.2\n"
    )
    result = check_config(path, ["run.batch_size=4", "generators.my-noise.grid=4"])
    assert result.code == 0 and result.err == "", result.err
    assert "generators: real (real), my-noise (noise)" in result.out


# --------------------------------------------------------------------------------------------
# Files that are not TOML text


def test_a_folder_as_config(tmp_path):
    assert_one_error(check_config(tmp_path), str(tmp_path), "", "is a folder; expected a TOML config file")


def test_a_missing_config(tmp_path):
    assert_one_error(check_config(tmp_path / "nope.toml"), str(tmp_path / "nope.toml"), "", "config file not found")


def test_a_path_through_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "bench.toml"
    assert_one_error(check_config(path), str(path), "", "cannot read the config file (Not a directory)")


def test_a_device_file_is_not_read(tmp_path):
    assert_one_error(check_config(Path("/dev/zero")), "/dev/zero", "", "is not a regular file")


def test_an_unreadable_config(tmp_path, monkeypatch):
    path = tmp_path / "bench.toml"
    path.write_text("[run]\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 000 does not stop root, who runs CI
    assert_one_error(check_config(path), str(path), "", "cannot read the config file (permission denied)")


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"[run]\nseed = 1\n# caf\xe9\n", "expected UTF-8 text (a TOML file), found byte 0xe9 on line 3"),
        (b"\xff\xfe[\x00r\x00u\x00n\x00]\x00", "expected UTF-8 text (a TOML file), found byte 0xff on line 1"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00", "not valid TOML (Invalid statement"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "expected UTF-8 text (a TOML file), found byte 0x89 on line 1"),
    ],
)
def test_binary_and_non_utf8_configs(tmp_path, data, fragment):
    path = tmp_path / "bench.toml"
    path.write_bytes(data)
    assert_one_error(check_config(path), str(path), "", fragment)


def test_an_oversized_config(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_bytes(b"#" * (4 * 1024 * 1024 + 1))
    assert_one_error(check_config(path), str(path), "", "is 4194305 bytes; expected a TOML config file of at most 4194304")


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_bytes(b"\xef\xbb\xbf[run]\nseed = 3\n")
    assert check_config(path).code == 0


# --------------------------------------------------------------------------------------------
# Generated: wrong types for every known key, unknown keys, hostile names, garbage, random --set


def leaf_keys(cls: type = BenchConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable key of the config (dotted) -> its annotation."""
    found: dict[str, Any] = {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in ("generators", "source"):
            continue
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            found.update(leaf_keys(tp, f"{key}."))
        else:
            found[key] = tp
    return found


LEAVES = leaf_keys()
LEAVES.update({"generators.g.contrast": float, "generators.g.grid": int})  # a generator's own options (type noise)


def kind_of(tp: Any) -> str:
    """What TOML kind a key takes: bool, int, float, str, list or table (Literal: its values' kind)."""
    origin = get_origin(tp)
    if origin in (list, dict):
        return {list: "list", dict: "table"}[origin]
    if origin is not None:  # Literal
        kinds = {type(a).__name__ for a in get_args(tp)}
        return kinds.pop() if len(kinds) == 1 else "literal-mixed"
    return tp.__name__


SCALARS = {
    "bool": st.booleans(),
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not float(x).is_integer()),
    "str": st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(lambda s: "~" + s),
}
VALUES = {
    **SCALARS,
    "list": st.lists(st.one_of(*SCALARS.values()), max_size=3),
    "table": st.dictionaries(st.sampled_from(["a", "b"]), st.one_of(*SCALARS.values()), min_size=1, max_size=2),
}
WRONG = {  # for each kind, values of every other kind (ints are numbers for float keys)
    "bool": ["int", "float", "str", "list", "table"],
    "int": ["bool", "float", "str", "list", "table"],
    "float": ["bool", "str", "list", "table"],
    "str": ["bool", "int", "float", "list", "table"],
    "list": ["bool", "int", "float", "str", "table"],
    "table": ["bool", "int", "float", "str", "list"],
    "literal-mixed": ["bool", "float", "list", "table"],
}


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text.replace("\\", "\\\\"))
    return '"' + escaped.replace('"', '\\"') + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def as_file(key: str, value: Any) -> str:
    *table, leaf = key.split(".")
    header = ("[" + ".".join(table) + "]\n") if table else ""
    extra = "type = 'noise'\n" if key.startswith("generators.g.") else ""
    return f"{header}{extra}{leaf} = {toml_value(value)}\n"


@st.composite
def wrong_typed(draw) -> tuple[str, Any]:
    key = draw(st.sampled_from(sorted(LEAVES)))
    kind = draw(st.sampled_from(WRONG[kind_of(LEAVES[key])]))
    return key, draw(VALUES[kind])


@FUZZ
@given(case=wrong_typed(), on_command_line=st.booleans())
def test_wrong_types_for_every_key(tmp_path, case, on_command_line):
    key, value = case
    path = tmp_path / "bench.toml"
    if on_command_line:
        prelude = "[generators.g]\ntype = 'noise'\n" if key.startswith("generators.g.") else ""
        path.write_text(prelude)
        item = f"{key}={toml_value(value)}"
        result, source = check_config(path, [item]), f"--set {item}"
    else:
        path.write_text(as_file(key, value))
        result, source = check_config(path), str(path)
    line = assert_one_error(result, source)
    assert line[len(f"config error: {shown(source)}: ") :].startswith(key), line
    assert "expected" in line


KEY_NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)


@FUZZ
@given(section=st.sampled_from([s for s in SECTION_KEYS if s != "generators"] + ["dataset.label_policy"]), name=KEY_NAMES)
def test_unknown_keys(tmp_path, section, name):
    known = {k.rsplit(".", 1)[-1] for k in LEAVES if k.rsplit(".", 1)[0] == section}
    if name in known or (section == "dataset" and name in ("label_policy", "synthetic")):
        name = name + "~"
    path = tmp_path / "bench.toml"
    path.write_text(f"[{section}]\n{toml_string(name)} = 1\n")
    assert_one_error(check_config(path), str(path), f"{section}.{key_part(name)}", "unknown key (known keys: ")


@FUZZ
@given(name=KEY_NAMES)
def test_unknown_sections(tmp_path, name):
    if name in SECTION_KEYS:
        name = name + "~"
    path = tmp_path / "bench.toml"
    path.write_text(f"{toml_string(name)} = {{}}\n")
    assert_one_error(check_config(path), str(path), key_part(name), "unknown section (known sections: ")


@FUZZ
@given(name=KEY_NAMES.filter(lambda n: not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", n)))
def test_hostile_generator_names(tmp_path, name):
    path = tmp_path / "bench.toml"
    path.write_text(f"[generators.{toml_string(name)}]\ntype = 'noise'\n")
    assert_one_error(check_config(path), str(path), f"generators.{key_part(name)}", f"invalid generator name {name!r}")


@FUZZ
@given(data=st.binary(max_size=200))
def test_garbage_files(tmp_path, data):
    path = tmp_path / "bench.toml"
    path.write_bytes(data)
    result = check_config(path)
    try:
        tomllib.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        assert_one_error(result, str(path))
        assert "expected UTF-8 text" in result.err or "not valid TOML" in result.err
    else:  # rare: garbage that is TOML (a comment, an empty table...): fine, or one clean error
        assert result.code == 0 or assert_one_error(result, str(path))


TOML_LIKE = st.text(st.sampled_from(list("[]{}=.,'\"#\n\\ abcrun_seed0123tfe-+")), max_size=40)


@FUZZ
@given(text=TOML_LIKE)
def test_toml_like_garbage(tmp_path, text):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    result = check_config(path)
    assert result.code == 0 or assert_one_error(result, str(path))


@FUZZ
@given(item=st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30), TOML_LIKE))
def test_random_set_values(tmp_path, item):
    """Anything after --set: an error is the command line's, one line; a valid key only by luck."""
    path = tmp_path / "bench.toml"
    path.write_text("[run]\nseed = 1\n")
    result = check_config(path, [item])
    if result.code == 0:
        key = item.partition("=")[0].strip()
        assert key in LEAVES, item
    else:
        assert_one_error(result, f"--set {item}")


@FUZZ
@given(key=st.sampled_from(sorted(LEAVES)), text=TOML_LIKE)
def test_random_values_for_known_keys(tmp_path, key, text):
    path = tmp_path / "bench.toml"
    path.write_text("[generators.g]\ntype = 'noise'\n")
    result = check_config(path, [f"{key}={text}"])
    assert result.code == 0 or assert_one_error(result, f"--set {key}={text}", key)
