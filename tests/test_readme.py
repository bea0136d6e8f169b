"""Every shell command and Python block of README.md, run as a newcomer would, on tiny inputs made here.

Each block runs in a sandbox: a copy of the working tree (with links to its ``.venv`` and ``.venv-blender``)
whose ``outputs/quickstart/`` holds what ``make quickstart`` leaves — ``train/final``, ``index``,
``query.png`` and ``library`` from the session's sample library (tests/service/fixtures.py), ``dataset``
from tests/training's synthetic dataset — plus the tiny OpenShape checkpoint ``model.pt`` of tests/convert.
Shell commands run one by one through bash (``set -euo pipefail``), Python blocks as a script whose line
numbers are the README's. The Hub is the loopback one (tests/loopback_hub.py): pushes upload to it, and
what it holds is laid out as an offline cache after every command, so loading by Hub id reads what was
pushed (``HF_HUB_OFFLINE=1`` otherwise: nothing reaches the network).

A command runs exactly as written unless SUBSTITUTIONS, the one table of differences, says otherwise and
why. A command the sandbox cannot run makes its block fail, naming the README line: change the README, or
add it to the table. Table entries that match no README command fail too, so the table stays the truth.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hf_cmah.service.process import ServiceProcess, free_port
from tests.conftest import REPO_ROOT
from tests.loopback_hub import cache_pushed_repos, loopback_hub

pytestmark = [pytest.mark.slow, pytest.mark.blender]  # Blender renders in the quickstart, data build, add-on

README = REPO_ROOT / "README.md"
SHELL_LANGUAGES = ("bash", "sh", "console")
DISPLAY_LANGUAGES = ("text", "json", "yaml")  # output or file examples: shown, not run
FENCE = re.compile(r"^```(\S*)\s*$")
COMMAND_TIMEOUT_S = 600

# make never rebuilds the environments here: their stamps can be older than pyproject.toml while someone edits it.
MAKE = "make -o .venv/.installed -o .venv-blender/.installed"
# A training run a CPU finishes in seconds: the sandbox's dataset, cmah-tiny, one step of 4 pairs.
TINY_TRAINING = (
    "--set data.path=outputs/quickstart/dataset --set data.num_workers=0 --set model.preset=cmah-tiny"
    " --set training.max_steps=1 --set training.batch_size=4 --set training.warmup_steps=0"
    " --set output.eval_every=0 --set output.report_to=none"
)
QUICKSTART_ARGS = "--per-category 3 --steps 2"
OPENSHAPE_PROJECTION_DIM = 20  # the tiny checkpoint's shared embedding width
# `hf-cmah` with the OpenShape converter's preset swapped for tests/convert's tiny widths and a tiny local CLIP.
TINY_CONVERTER = f"""
import sys
from hf_cmah.cli import main
from hf_cmah.convert import common, openshape
from tests.convert.test_convert_prealigned import ppat_config

def tiny_target(config, preset, code_bits, source):
    tiny = ppat_config(projection_dim={OPENSHAPE_PROJECTION_DIM}, shape_projection="linear")
    tiny.image_tower_checkpoint = "tiny-clip"
    return common.target_config(tiny, preset, code_bits, source)

openshape.target_config = tiny_target
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class Substitution:
    """How one README command runs here, when not exactly as written."""

    pattern: str  # a regex that fully matches the command (continuation lines joined, comment left out)
    why: str
    run: Callable[[str], str] | None = None  # the command → what bash runs; None: skipped
    env: Mapping[str, str] = field(default_factory=dict)
    serve: bool = False  # long-running: started in the background until /healthz answers ($PORT), stopped after
    fresh_checkout: bool = False  # runs in a sandbox without outputs/; its block runs last (the slowest)


SUBSTITUTIONS: tuple[Substitution, ...] = (
    Substitution(r"make test", "runs the whole suite, this test included"),
    Substitution(
        r"make quickstart",
        f"the full run trains for minutes: QUICKSTART_ARGS='{QUICKSTART_ARGS}', in a checkout without outputs/",
        lambda command: (
            f"dry_run=$({MAKE} -n quickstart QUICKSTART_ARGS='{QUICKSTART_ARGS}')\n"
            f"[[ $dry_run == *'{QUICKSTART_ARGS}'* ]]"
            " || { echo 'the Makefile does not pass QUICKSTART_ARGS: the full quickstart would run' >&2; exit 3; }\n"
            f"{MAKE} quickstart QUICKSTART_ARGS='{QUICKSTART_ARGS}'\n"
            "test -f outputs/quickstart/report.md"
        ),
        fresh_checkout=True,
    ),
    Substitution(r"make demo", "served on a free port", lambda command: f"{MAKE} demo DEMO_PORT=$PORT", serve=True),
    Substitution(r"hf-cmah serve .*", "served on a free port", lambda command: f"{command} --port $PORT", serve=True),
    Substitution(
        r"curl .*http://127\.0\.0\.1:7860/.*",
        "asks the server its block started; an HTTP error fails it",
        lambda command: command.replace("curl ", "curl --fail-with-body ", 1).replace(":7860/", ":$SERVER_PORT/"),
    ),
    Substitution(r"make (blender-addon|space)( .*)?", "make never rebuilds the environments", lambda c: MAKE + c[4:]),
    Substitution(r"hf-cmah train .*", "a tiny run (TINY_TRAINING)", lambda command: f"{command} {TINY_TRAINING}"),
    Substitution(
        r"accelerate launch --config_file training/accelerate/(gpu|multi-gpu-ddp)\.yaml .*",
        "no GPU here: ACCELERATE_USE_CPU=1, at most 2 processes on a free port, a tiny run (TINY_TRAINING)",
        lambda command: (
            re.sub(r"--num_processes \d+", f"--num_processes 2 --main_process_port {free_port()}", command)
            + f" {TINY_TRAINING}"
        ),
        env={"ACCELERATE_USE_CPU": "1"},
    ),
    Substitution(r"hf-cmah (index )?push .*", "uploads to the loopback Hub", lambda c: c, {"HF_HUB_OFFLINE": "0"}),
    Substitution(
        r"hf-cmah convert openshape model\.pt .*",
        "real widths need a 2.5B-parameter CLIP: tests/convert's tiny checkpoint, its widths, a tiny local CLIP",
        lambda command: 'python -c "$TINY_CONVERTER" ' + command.removeprefix("hf-cmah "),
        {"TINY_CONVERTER": TINY_CONVERTER},
    ),
)


@dataclass(frozen=True)
class Command:
    line: int  # the README line it starts on
    text: str  # continuation lines joined

    @property
    def bare(self) -> str:
        """The command without its comment, as the substitution patterns see it."""
        return shlex.join(shlex.split(self.text, comments=True))


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # the README line of the block's first line of code
    code: str

    @property
    def commands(self) -> list[Command]:
        """The shell commands: one per line (``\\`` continues it); in a console block, the ``$ `` lines."""
        commands, pending, start = [], "", 0
        for number, line in enumerate(self.code.splitlines(), start=self.line):
            if self.language == "console" and not pending:  # a continued command's next line has no prompt
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not pending:
                start = number
            pending += line
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if shlex.split(pending, comments=True):
                commands.append(Command(start, pending.strip()))
            pending = ""
        return commands


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order."""
    blocks, language, start, body = [], None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if language is None and match:
            language, start, body = match.group(1), number + 1, []
        elif language is not None and line.strip() == "```":
            blocks.append(Block(language, start, "\n".join(body) + "\n"))
            language = None
        elif language is not None:
            body.append(line)
    return blocks


def substitution_for(command: Command) -> Substitution | None:
    matches = [entry for entry in SUBSTITUTIONS if re.fullmatch(entry.pattern, command.bare)]
    assert len(matches) <= 1, f"README.md:{command.line}: `{command.bare}` matches {len(matches)} substitutions"
    return matches[0] if matches else None


def needs_fresh_checkout(block: Block) -> bool:
    return block.language != "python" and any(
        (entry := substitution_for(command)) is not None and entry.fresh_checkout for command in block.commands
    )


def runnable_blocks() -> list[Block]:
    """The blocks to run, in README order, except that blocks needing a fresh checkout go last."""
    blocks = [block for block in readme_blocks(README.read_text()) if block.language in (*SHELL_LANGUAGES, "python")]
    return sorted(blocks, key=needs_fresh_checkout)


# ----------------------------------------------------------------------------- the sandbox
def copy_checkout(target: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored) under ``target``; the environments linked."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for environment in (".venv", ".venv-blender"):
        (target / environment).symlink_to(REPO_ROOT / environment)
    return target


def write_openshape_checkpoint(folder: Path) -> None:
    """tests/convert's random PPAT weights in OpenShape's L/14 layout as ``model.pt``, and its tiny CLIP."""
    import torch

    from tests.convert.test_convert_prealigned import PPAT, ppat_state_dict, tiny_clip

    generator = torch.Generator().manual_seed(4)
    checkpoint = {f"pc_encoder.ppat.{key}": value for key, value in ppat_state_dict(seed=3).items()}
    checkpoint["pc_encoder.proj.weight"] = torch.randn(OPENSHAPE_PROJECTION_DIM, PPAT["dim"], generator=generator)
    checkpoint["pc_encoder.proj.bias"] = torch.randn(OPENSHAPE_PROJECTION_DIM, generator=generator)
    torch.save(checkpoint, folder / "model.pt")
    tiny_clip(folder / "tiny-clip", projection_dim=OPENSHAPE_PROJECTION_DIM)


@pytest.fixture(scope="module")
def prepared_checkout(tmp_path_factory, sample_library) -> Path:
    """A checkout after `make quickstart`: its outputs made from the sample library, plus ``model.pt``."""
    from tests.training.conftest import write_synthetic_dataset

    checkout = copy_checkout(tmp_path_factory.mktemp("readme") / "checkout")
    quickstart = checkout / "outputs" / "quickstart"
    shutil.copytree(sample_library.model_dir, quickstart / "train" / "final")
    shutil.copytree(sample_library.index_dir, quickstart / "index")
    shutil.copytree(sample_library.library_dir, quickstart / "library")
    shutil.copy2(sample_library.query_image, quickstart / "query.png")
    write_synthetic_dataset(quickstart / "dataset")
    write_openshape_checkpoint(checkout)
    return checkout


@pytest.fixture(scope="module")
def readme_env(tmp_path_factory) -> dict[str, str]:
    """The environment every command gets: the project's venv first, a private HOME, Hub cache and hf-cmah cache,
    the loopback Hub, one thread per process (the machine is shared)."""
    home = tmp_path_factory.mktemp("readme-home")
    with loopback_hub() as endpoint:
        inherited = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "ACCELERATE_"))}
        yield {
            **inherited,
            "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            "HF_HOME": str(home / "hf"),
            "HF_CMAH_CACHE": str(home / "hf-cmah-cache"),
            "HF_ENDPOINT": endpoint,
            "HF_TOKEN": "hf_readme_test",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "OMP_NUM_THREADS": "1",
        }


def failure(where: str, what: str, why: str, output: str) -> str:
    return (
        f"{where}: `{what}` failed ({why}): fix the README, or add the command to SUBSTITUTIONS in {__file__}\n{output}"
    )


def run_shell_block(block: Block, checkout: Path, env: dict[str, str]) -> None:
    env = dict(env)
    with contextlib.ExitStack() as servers:
        for command in block.commands:
            entry = substitution_for(command)
            if entry is not None and entry.run is None:
                print(f"README.md:{command.line}: skipped `{command.bare}`: {entry.why}")
                continue
            script = entry.run(command.bare) if entry is not None else command.text
            command_env = {**env, **(entry.env if entry is not None else {})}
            where = f"README.md:{command.line}"
            if entry is not None and entry.serve:
                try:
                    server = ServiceProcess(command=["bash", "-c", script], env=command_env, cwd=checkout)
                    servers.enter_context(server)
                except RuntimeError as error:
                    pytest.fail(failure(where, command.bare, "no /healthz", str(error)[-6000:]))
                env["SERVER_PORT"] = str(server.port)
            else:
                result = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", script], cwd=checkout, env=command_env,
                    capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                )  # fmt: skip
                if result.returncode != 0:
                    output = (result.stdout[-3000:] + "\n" + result.stderr[-6000:]).strip()
                    pytest.fail(failure(where, script, f"exit {result.returncode}", output))
            cache_pushed_repos(Path(env["HF_HOME"]) / "hub")


def run_python_block(block: Block, checkout: Path, env: dict[str, str]) -> None:
    """The block as a script padded so that its tracebacks give README line numbers."""
    script = checkout / f"README.md-line-{block.line}.py"
    script.write_text("\n" * (block.line - 1) + block.code)
    result = subprocess.run(
        [sys.executable, script.name], cwd=checkout, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )
    if result.returncode != 0:
        pytest.fail(failure(f"README.md:{block.line}", "python block", f"exit {result.returncode}", result.stderr))


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: f"README.md:{block.line}-{block.language}")
def test_readme_block_runs(block, request, readme_env, tmp_path):
    if needs_fresh_checkout(block):
        checkout = copy_checkout(tmp_path / "checkout")
    else:
        checkout = request.getfixturevalue("prepared_checkout")
    if block.language == "python":
        run_python_block(block, checkout, readme_env)
    else:
        run_shell_block(block, checkout, readme_env)


def test_every_code_block_is_run_or_shown():
    """A block in a language this test neither runs nor lists as display-only would go untested."""
    unknown = [
        f"README.md:{block.line}: ```{block.language}"
        for block in readme_blocks(README.read_text())
        if block.language not in (*SHELL_LANGUAGES, "python", *DISPLAY_LANGUAGES)
    ]
    assert not unknown, "blocks neither run nor display-only: " + ", ".join(unknown)


def test_every_substitution_matches_a_readme_command():
    commands = [command for block in runnable_blocks() if block.language != "python" for command in block.commands]
    stale = [entry.pattern for entry in SUBSTITUTIONS if not any(re.fullmatch(entry.pattern, c.bare) for c in commands)]
    assert not stale, f"SUBSTITUTIONS entries that match no README command (remove or fix them): {stale}"
