"""The quickstart's steps: each reused when its output is complete and made with the same settings, else run.

A step's settings are recorded in ``quickstart.json`` when it starts, so a half-finished output
(a training run killed between checkpoints) is known to be this run's and is resumed or redone,
and an output made with other settings is never taken for this run's. A step that runs makes
every later step run too, from scratch: their outputs were made from the old one.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..cli import main as cli_main

T = TypeVar("T")


class QuickstartError(SystemExit):
    """A step failed: exits the process with ``quickstart: step "<name>" failed: <why>`` (status 1)."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f'quickstart: step "{step}" failed: {reason}')
        self.step = step


@dataclass(frozen=True)
class Step:
    """One step: its name, the folder it makes, the settings that folder depends on, and how to tell it is done."""

    name: str
    output: Path
    settings: dict
    done: Callable[[], bool]


@dataclass
class StepRunner:
    """Runs steps in order against the record file; reuses, resumes or redoes each one."""

    record_file: Path
    records: dict = field(init=False)
    upstream_ran: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.records = json.loads(self.record_file.read_text()) if self.record_file.is_file() else {}

    def run(self, step: Step, action: Callable[[], None]) -> None:
        """Reuse ``step`` if it is finished, else run ``action``; any failure raises QuickstartError."""
        self._check_settings(step)
        if not self.upstream_ran and step.done():
            print(f"reusing {step.name}: {step.output} (delete it to redo)", flush=True)
            return
        stale = self.upstream_ran and step.output.exists()
        self.upstream_ran = True

        def work() -> None:
            if stale:
                print(f"redoing {step.name}: {step.output} was made from an earlier step's old output", flush=True)
                shutil.rmtree(step.output)
            self._record(step)
            action()

        run_action(step.name, work)
        if not step.done():
            raise QuickstartError(step.name, f"it finished but {step.output} is incomplete (delete it to redo)")

    def _check_settings(self, step: Step) -> None:
        if not step.output.exists() or self.records.get(step.name) == step.settings:
            return
        recorded = self.records.get(step.name)
        made_with = f"with {recorded}" if recorded is not None else f"by another run (not in {self.record_file})"
        raise QuickstartError(
            step.name,
            f"{step.output} was made {made_with}, this run asks for {step.settings}: "
            "delete it to redo, or choose another --out",
        )

    def _record(self, step: Step) -> None:
        self.records[step.name] = step.settings
        self.record_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.record_file.with_suffix(".json.partial")  # a killed write never leaves half a record
        partial.write_text(json.dumps(self.records, indent=1))
        partial.replace(self.record_file)


def run_action(step: str, action: Callable[[], T]) -> T:
    """Run one step's work and return its result; whatever it raises becomes a QuickstartError naming the step."""
    try:
        return action()
    except QuickstartError:
        raise
    except SystemExit as error:  # argparse's exit on a bad command line
        raise QuickstartError(step, f"it exited with status {error.code}") from error
    except Exception as error:
        raise QuickstartError(step, f"{type(error).__name__}: {error}") from error


def run_cli(step: str, arguments: list[str]) -> None:
    """Run one `hf-cmah` command as a user would type it, echoing it first; a non-zero exit fails ``step``."""
    print(f"\n$ hf-cmah {shlex.join(arguments)}", flush=True)
    status = cli_main(arguments)
    if status:
        raise QuickstartError(step, f"`hf-cmah {shlex.join(arguments)}` exited with status {status} (see above)")


__all__ = ["QuickstartError", "Step", "StepRunner", "run_action", "run_cli"]
