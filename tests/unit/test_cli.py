"""The CLI contract: options on every command, exit codes, one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import WG_TUNER, cli
from tuner import __version__
from tuner.cli import build_parser, default_policies, main
from tuner.terminal import EscapingStream, escape_controls


def test_version() -> None:
    proc = cli(["--version"])
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"wg-tuner {__version__}"


def test_unknown_command_exits_64_with_one_error_line() -> None:
    proc = cli(["frobnicate"])
    assert proc.returncode == 64
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "frobnicate" in errors[0]
    assert "Traceback" not in proc.stderr


def test_bad_option_exits_64_not_the_changes_code() -> None:
    proc = cli(["status", "--format", "yaml"])
    assert proc.returncode == 64
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "command", ["status", "metrics", "validate", "plan", "apply", "run", "rollback", "history"]
)
def test_every_command_accepts_the_common_options(command: str) -> None:
    args = build_parser().parse_args(
        [command, "--state-dir", "/x", "--policies", "/p", "--log-format", "json"]
    )
    assert str(args.state_dir) == "/x"
    assert str(args.policies) == "/p"
    assert args.log_format == "json"


def test_common_options_before_the_command_are_kept() -> None:
    args = build_parser().parse_args(["--state-dir", "/y", "status"])
    assert str(args.state_dir) == "/y"


def test_state_dir_and_policies_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WG_TUNER_STATE_DIR", "/env/state")
    monkeypatch.setenv("WG_TUNER_POLICIES", "/env/policies")
    args = build_parser().parse_args(["status"])
    assert str(args.state_dir) == "/env/state"
    assert str(default_policies()) == "/env/policies"


def test_not_root_is_a_clear_error() -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is required"
    import subprocess

    proc = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", WG_TUNER, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 77
    assert "needs root" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_rejects_a_bad_metrics_address() -> None:
    proc = cli(["run", "--metrics-listen", "localhost:notaport"])
    assert proc.returncode == 64
    assert "--metrics-listen" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "command",
    ["status", "metrics", "validate", "plan", "apply", "run", "rollback", "history", "lab"],
)
def test_every_command_has_working_help(command: str) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0


def test_exit_codes_are_one_table_in_help_and_readme() -> None:
    from tests.conftest import REPO
    from tuner import exit_codes

    proc = cli(["--help"])
    assert proc.returncode == 0
    for e in exit_codes.TABLE:
        assert f"{e.code:<4} {e.name}" in proc.stdout
    assert exit_codes.markdown() in (REPO / "README.md").read_text()
    codes = [e.code for e in exit_codes.TABLE]
    assert len(codes) == len(set(codes))


def test_plan_help_lists_the_exit_codes() -> None:
    proc = cli(["plan", "--help"])
    assert proc.returncode == 0
    assert "64" in proc.stdout and "changes would be applied" in proc.stdout


def test_version_and_help_import_nothing_heavy() -> None:
    """--version and --help end in the parser: no pyroute2, prometheus_client, structlog
    or engine is imported (their imports were most of a 0.4 s start)."""
    code = (
        "import sys\n"
        "from tuner.cli import main\n"
        "for argv in (['--version'], ['--help'], ['run', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('pyroute2', 'prometheus_client', 'structlog', 'yaml',\n"
        "         'tuner.commands', 'tuner.engine.executor') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:", out.stdout[-500:]


def test_the_lab_fault_choices_are_the_labs_faults() -> None:
    from tuner.cli import LAB_FAULTS
    from tuner.lab.faults import FAULTS
    from tuner.lab.lab import FAULT_OFF, FAULT_ON

    assert LAB_FAULTS == FAULTS == tuple(FAULT_ON) == tuple(FAULT_OFF)


def test_text_output_shows_control_characters_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "\x1b]0;owned\x07\x1b[2J.yaml"  # retitle and clear the terminal
    hostile.write_text("not: [a policy\n")
    hostile.chmod(0o644)
    assert main(["--policies", str(tmp_path), "validate"]) != 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "\\x1b]0;owned\\x07\\x1b[2J.yaml" in out
    assert sys.stdout is not None and not isinstance(sys.stdout, EscapingStream)


def test_escaping_keeps_newlines_tabs_and_text() -> None:
    assert escape_controls("a\tb\nc \u00e9\u2603") == "a\tb\nc \u00e9\u2603"
    assert escape_controls("\x00\x1b\x7f\x9b") == "\\x00\\x1b\\x7f\\x9b"
