"""The `hf-cmah` entry points: the console script, ``python -m hf_cmah.cli``, and a `--help` that stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import tomllib

from hf_cmah.cli import main
from tests.conftest import REPO_ROOT

COMMANDS = ("model", "encode", "data", "train", "eval", "eval-curves", "push", "convert", "index", "search", "serve")
HEAVY = ("fastapi", "gradio", "uvicorn", "datasets", "matplotlib")  # (torch and transformers: import hf_cmah)


def test_the_console_script_is_hf_cmah_cli_main():
    target = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["hf-cmah"]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_python_m_hf_cmah_cli_lists_every_command_group_without_importing_the_heavy_libraries():
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['hf-cmah', '--help']\n"
        "try:\n    runpy.run_module('hf_cmah.cli', run_name='__main__')\n"
        "except SystemExit as end:\n    assert end.code == 0, end.code\n"
        f"print('heavy:', sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    listed = done.stdout.split("positional arguments:")[1].split("options:")[0].split()
    assert all(command in listed for command in COMMANDS)
    assert done.stdout.strip().endswith("heavy: []")


def test_a_bad_argument_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["index", "info", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hf-cmah index: error: ") and str(tmp_path / "missing") in error
    assert "Traceback" not in error
