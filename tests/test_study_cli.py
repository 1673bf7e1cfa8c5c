"""`xreal-bench study` management commands: printed serve commands that match the links, `links`,
`revoke`, `serve`'s port and address, names printed safely."""

import sqlite3

import pytest

from xreal_bench.cli import main
from xreal_bench.demo.study import write_sample_run
from xreal_bench.errors import UserFacingError
from xreal_bench.reader_study import cli as study_cli
from xreal_bench.reader_study.address import parse_base_url, serve_hint
from xreal_bench.reader_study.cli import printable
from xreal_bench.reader_study.storage import Storage


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("http://localhost:8611", "--port 8611 --base-url http://localhost:8611"),
        ("http://127.0.0.1:8611/", "--port 8611 --base-url http://127.0.0.1:8611"),
        ("http://10.0.0.5:8611", "--port 8611 --host 0.0.0.0 --base-url http://10.0.0.5:8611"),
        ("HTTP://Study.Lab:9000/reading/", "--port 9000 --host 0.0.0.0 --base-url http://Study.Lab:9000/reading"),
        ("http://study.lab", "--port 80 --host 0.0.0.0 --base-url http://study.lab"),
        (
            "https://study.example.org",
            "--port 8501 --base-url https://study.example.org  "
            "(behind your TLS proxy for https://study.example.org, forwarding to http://localhost:8501)",
        ),
    ],
)
def test_serve_hint_matches_the_base_url(tmp_path, url, hint):
    assert serve_hint(tmp_path / "s", parse_base_url(url)) == f"xreal-bench study serve {tmp_path / 's'} {hint}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:8611", "expected http://HOST[:PORT][/PATH]"),
        ("ftp://host", "expected http://HOST[:PORT][/PATH]"),
        ("http://", "expected http://HOST[:PORT][/PATH]"),
        ("http://host:99999", "the port is not a number from 0 to 65535"),
        ("http://host/?a=1", "no user name, query or fragment allowed"),
        ("http://user@host", "no user name, query or fragment allowed"),
    ],
)
def test_bad_base_urls_are_refused(url, message):
    with pytest.raises(UserFacingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_base_url(url)


def test_printable_escapes_control_and_bidi_characters():
    assert printable("dr_lee") == "dr_lee"
    assert printable("a\x1b[2Jb\u202etxt.exe\\n\n\x00\U000e0041") == "a\\x1b[2Jb\\u202etxt.exe\\\\n\\x0a\\x00\\U000e0041"


@pytest.fixture
def study_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./bench.toml
    run = write_sample_run(tmp_path / "run", n_cases=3)
    code = main([
        "study", "create", "--runs", str(run), "--out", str(tmp_path / "study"), "--n-cases", "2",
        "--generators", "xreal", "--readers", "r1", "r2", "--no-turing", "--duplicates", "0", "--calibration", "0",
        "--set", "study.image_size=64", "--base-url", "http://10.0.0.5:8611/",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    links = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("  ")]
    assert len(links) == 3 and all(link.startswith("http://10.0.0.5:8611/?token=") for link in links)
    study = tmp_path / "study"
    assert f"serve with: xreal-bench study serve {study} --port 8611 --host 0.0.0.0 --base-url http://10.0.0.5:8611\n" in out
    return study


def token_of(line: str) -> str:
    return line.split("?token=", 1)[1]


def test_links_rotate_and_revoke(study_dir, capsys):
    db = study_dir / "study.sqlite"
    assert main(["study", "links", str(study_dir)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  r1 (reader): active, 0 / 4 done",
        "  r2 (reader): active, 0 / 4 done",
        "  admin (admin): active",
    ]
    assert main(["study", "links", str(study_dir), "admin"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("admin: http://10.0.0.5:8611/?token=")  # the base URL the study remembers
    assert second == "(shown once, stored hashed; the previous link no longer signs in)"
    with Storage(db) as s:
        assert s.authenticate(token_of(first)).role == "admin"
    assert main(["study", "revoke", str(study_dir), "r2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "revoked r2: their link signs in no more; their ratings are kept",
        f"`xreal-bench study links {study_dir} r2` re-activates r2 with a new link",
    ]
    assert main(["study", "revoke", str(study_dir), "r2"]) == 0
    assert "r2 was already revoked (" in capsys.readouterr().out
    assert main(["study", "status", str(study_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == ["r1: 0 / 4", "r2: 0 / 4 (revoked)"]
    assert main(["study", "links", str(study_dir), "r2", "--base-url", "https://study.example.org/rs"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("r2: https://study.example.org/rs/?token=")
    assert "; re-activated (revoked " in second
    with Storage(db) as s:
        assert s.authenticate(token_of(first)).name == "r2"
        assert s.meta("base_url") == "https://study.example.org/rs"


def test_unknown_and_invalid_names_are_clear_errors(study_dir, capsys):
    assert main(["study", "links", str(study_dir), "dr_x"]) == 2
    assert capsys.readouterr().err == f"error: {study_dir}: no account named 'dr_x' in this study (accounts: r1, r2, admin)\n"
    assert main(["study", "revoke", str(study_dir), "dr_x"]) == 2
    assert "no account named 'dr_x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", "revoke", str(study_dir), "../r1"])
    assert "account name '../r1' is not a valid name" in capsys.readouterr().err


def test_status_prints_hostile_names_escaped(study_dir, capsys):
    con = sqlite3.connect(study_dir / "study.sqlite")  # a name no command would accept, written directly
    con.execute("UPDATE readers SET name = ? WHERE name = 'r1'", ("evil\x1b]0;owned\x07\u202e",))
    con.commit()
    con.close()
    assert main(["study", "status", str(study_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == ["evil\\x1b]0;owned\\x07\\u202e: 0 / 4", "r2: 0 / 4"]


def test_serve_listens_where_the_links_point(study_dir, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(study_cli.os, "execve", lambda path, argv, env: calls.append((argv, env)))
    main(["study", "serve", str(study_dir)])
    argv, env = calls[-1]
    options = dict(zip(argv[5::2], argv[6::2]))
    assert argv[3:5] == ["run", str(study_cli.LAUNCHER)]
    assert options["--server.port"] == "8611" and options["--server.address"] == "0.0.0.0"
    assert options["--server.baseUrlPath"] == "" and options["--server.enableAgentApi"] == "false"
    assert env["XREAL_BENCH_STUDY_DIR"] == str(study_dir.resolve())
    assert "readers open their links at http://10.0.0.5:8611/ " in capsys.readouterr().out
    main(["study", "serve", str(study_dir), "--base-url", "https://study.example.org/rs/"])
    options = dict(zip(calls[-1][0][5::2], calls[-1][0][6::2]))
    assert (options["--server.port"], options["--server.address"], options["--server.baseUrlPath"]) == ("8501", "localhost", "rs")
    main(["study", "serve", str(study_dir), "--port", "9000"])  # explicit flags win; the mismatch is said
    options = dict(zip(calls[-1][0][5::2], calls[-1][0][6::2]))
    assert (options["--server.port"], options["--server.address"]) == ("9000", "localhost")
    err = capsys.readouterr().err
    assert err == ""  # the remembered base URL is now the https one: a proxy may forward to any port
    main(["study", "serve", str(study_dir), "--port", "9000", "--base-url", "http://10.0.0.5:8611"])
    assert capsys.readouterr().err == "warning: the links point at http://10.0.0.5:8611 but this server listens on port 9000\n"
