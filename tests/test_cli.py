"""The ``bpcore`` command line and ``bpcore info``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bpcore import cli
from bpcore.backends.ops import OPERATIONS


def test_info_prints_versions_devices_and_the_dispatch_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bpcore ")
    assert "devices  cpu" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[8:] if line.strip()}
    assert set(OPERATIONS) <= set(rows)
    assert rows["tanh_forward"][0] == "generic"  # NumPy's SIMD tanh is kept on the CPU
    assert rows["adam_step"][0] in {"numba", "generic"}


def test_info_shows_the_default_auto_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BPCORE_KERNELS", raising=False)
    cli.main(["info"])
    out = capsys.readouterr().out
    assert "kernels  auto (environment variable BPCORE_KERNELS; on the CPU, fit, predict and evaluate" in out


def test_info_shows_the_generic_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BPCORE_KERNELS", "generic")
    cli.main(["info"])
    out = capsys.readouterr().out
    assert "kernels  generic" in out
    assert "numba" not in out.split("operation", 1)[1]


def test_python_dash_m_bpcore_info_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bpcore", "info"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "adam_step" in result.stdout


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def test_every_subcommand_module_registers_a_handler() -> None:
    parser = cli.build_parser()
    for module_name in cli.SUBCOMMANDS:
        command = module_name.rsplit(".", 1)[-1]
        assert callable(parser.parse_args([command]).handler)


def test_a_device_error_is_one_line_and_status_2() -> None:
    result = subprocess.run([sys.executable, "-m", "bpcore", "bench", "--models", "tiny", "--devices", "tpu",
                             "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    err = result.stderr
    assert len(err.strip().splitlines()) == 1 and "tpu" in err and "Traceback" not in err


def test_info_into_a_closed_pipe_has_no_traceback() -> None:
    command = f"{sys.executable} -m bpcore info | head -n 1"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("bpcore ")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
