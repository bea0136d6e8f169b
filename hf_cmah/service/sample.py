"""The library a server shows when it is given none: the quickstart's model and index, built once if missing.

`hf-cmah serve` without ``--model/--index`` (and a Space without ``HF_CMAH_MODEL`` /
``HF_CMAH_INDEX``) serves what `make quickstart` left in ``outputs/quickstart``. When that is not
there, the quickstart's own steps build it in a background thread (its steps cache and
resume, so a restarted server continues), while the page says what is happening.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..quickstart import DEFAULT_OUT, quickstart_outputs
from .libraries import LibraryRegistry
from .settings import LibrarySpec

logger = logging.getLogger("hf_cmah.service")
SAMPLE_NAME = "quickstart"


def sample_specs(out: Path = DEFAULT_OUT) -> tuple[LibrarySpec, ...]:
    """The quickstart's library when both its model and its index exist, else none."""
    outputs = quickstart_outputs(out)
    if (outputs["model"] / "config.json").is_file() and (outputs["index"] / "manifest.json").is_file():
        return (LibrarySpec(SAMPLE_NAME, str(outputs["model"]), str(outputs["index"])),)
    return ()


def sample_examples(out: Path = DEFAULT_OUT) -> tuple[str, ...]:
    query = quickstart_outputs(out)["query"]
    return (str(query.resolve()),) if query.is_file() else ()


def start_sample_build(registry: LibraryRegistry, out: Path = DEFAULT_OUT) -> threading.Thread:
    """Build the quickstart's library in a daemon thread, then load it into ``registry``."""

    def build() -> None:
        from ..quickstart import main as quickstart

        try:
            registry.status = (
                f"building the sample library with the quickstart's steps into {out} (procedural shapes → "
                "Blender renders → training cmah-tiny → index); this takes about 15 minutes on 2 CPU cores, once"
            )
            logger.info(registry.status)
            status = quickstart(["--out", str(out)])
            if status:
                raise RuntimeError(f"the quickstart exited with status {status}")
            registry.load(sample_specs(out))
        except (Exception, SystemExit) as error:  # shown in the page and the log; the server keeps answering
            registry.status = f"building the sample library failed: {error}"
            logger.exception(registry.status)

    thread = threading.Thread(target=build, name="hf-cmah-sample-library", daemon=True)
    thread.start()
    return thread


__all__ = ["SAMPLE_NAME", "sample_examples", "sample_specs", "start_sample_build"]
