"""hf_cmah/modeling/ is self-contained (ARCHITECTURE.md, "Saved models"): every file of it imports only
torch, transformers, the standard library and its same-folder siblings, in the forms that transformers'
remote-code copying follows, so that a saved folder's copied files import without hf_cmah."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODELING = Path(__file__).resolve().parents[2] / "hf_cmah" / "modeling"
FILES = sorted(path.name for path in MODELING.glob("*.py"))
THIRD_PARTY = ("torch", "transformers")


def test_the_folder_has_the_files_this_test_checks():
    assert {"modeling_cmah.py", "modeling_prealigned.py", "input_checks.py", "vit_layers.py"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_imports_are_siblings_torch_transformers_or_the_standard_library(name):
    source = (MODELING / name).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            # transformers copies `from .sibling import x` only: not `..`, `from . import x` or `.sub.module`.
            assert node.level == 1 and node.module and "." not in node.module, (name, ast.unparse(node))
            assert (MODELING / f"{node.module}.py").is_file(), (name, node.module)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
            for module in modules:
                top = module.split(".")[0]
                assert top in THIRD_PARTY or top in sys.stdlib_module_names, (name, module)
    # transformers reads relative imports with a regex, so a docstring or comment line of that shape breaks saving.
    code_lines = {node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    for number, line in enumerate(source.splitlines(), start=1):
        if re.match(r"^\s*(from\s+\.|import\s+\.)", line):
            assert number in code_lines, f"{name}:{number}: {line.strip()!r} reads as an import to transformers"


def test_the_files_alone_import_as_a_package_without_hf_cmah(tmp_path):
    """Every file, copied alone into a folder of another name, imports where `import hf_cmah` fails."""
    package = tmp_path / "copied_modeling"
    package.mkdir()
    for name in FILES:
        shutil.copy(MODELING / name, package / name)
    modules = [name.removesuffix(".py") for name in FILES if name != "__init__.py"]
    code = textwrap.dedent(f"""
        import importlib, sys
        sys.modules["hf_cmah"] = None  # the package is not importable here
        for module in {modules!r}:
            importlib.import_module("copied_modeling." + module)
        import copied_modeling
        assert copied_modeling.CMAHModel.__module__ == "copied_modeling.modeling_cmah"
        print("imported", len({modules!r}))
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == str(len(modules))
