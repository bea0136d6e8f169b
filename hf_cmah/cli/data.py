"""``hf-cmah data build`` and ``hf-cmah data push``; heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import sys

ENGINE_CHOICES = ("cycles", "workbench", "mixed")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="build and publish shape datasets")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    _add_build(commands)
    push = commands.add_parser("push", help="upload a built dataset folder to the Hub (refuses PSB/ModelNet/ShapeNet)")
    push.add_argument("folder", help="a folder written by `hf-cmah data build`")
    push.add_argument("repo_id", help="Hub dataset repo, e.g. user/my-shapes")
    push.add_argument("--private", action="store_true")
    push.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    push.set_defaults(handler=_push)


def _add_build(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser("build", help="meshes → points + Blender renders → Parquet DatasetDict")
    build.add_argument("builder", help="meshfolder, psb, modelnet40, shapenet55, shapenetrender, pix3d, procedural")
    build.add_argument("root", nargs="?", default=None, help="the dataset folder or archive (none for procedural)")
    build.add_argument("--out", default=None, help="output folder (default: <cache>/datasets/<name>)")
    build.add_argument("--points", type=int, default=1024, help="points sampled per shape")
    build.add_argument("--colors", action="store_true", help="sample xyz+rgb (points become [N, 6])")
    build.add_argument("--seed", type=int, default=0, help="seeds point sampling, view jitter and splits")
    build.add_argument("--views", type=int, default=4, help="rendered views per shape (0: no rendering)")
    build.add_argument("--engine", choices=ENGINE_CHOICES, default="cycles")
    build.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    build.add_argument("--resolution", type=int, default=224)
    build.add_argument("--elevations", type=float, nargs="+", default=[30.0], help="degrees, cycled over views")
    build.add_argument("--jitter", type=float, default=0.0, help="random ± degrees added to azimuth and elevation")
    build.add_argument("--fov", type=float, default=40.0, help="camera field of view, degrees")
    build.add_argument("--background", default="white", help="'white', 'transparent' (RGBA) or R,G,B")
    _add_domain_randomisation(build)
    build.add_argument("--device", choices=("auto", "cpu"), default="auto", help="Cycles: GPU when present")
    build.add_argument("--blender", default=None, help="Blender executable or Python with bpy")
    build.add_argument("--batch-size", type=int, default=64, help="meshes per Blender process")
    build.add_argument("--threads", type=int, default=0, help="render threads (0: all cores)")
    build.add_argument("--jobs", type=int, default=None, help="Blender processes at once (default: one per core "
                       "for Workbench, which draws on one core; 1 for Cycles, which uses them all)")  # fmt: skip
    build.add_argument("--limit", type=int, default=None, help="only the first N shapes of each split (smoke tests)")
    build.add_argument("--strict", action="store_true", help="stop at the first bad file instead of skipping it")
    build.add_argument("--no-progress", action="store_true")
    build.add_argument("--test-fraction", type=float, default=None, help="meshfolder/procedural: share held out")
    build.add_argument("--up-axis", choices=("y", "z"), default=None, help="meshfolder: the meshes' up axis")
    build.add_argument("--meshes", default=None, help="shapenet55: ShapeNetCore folder to render views from")
    build.add_argument("--per-category", type=int, default=None, help="procedural: shapes per category")
    build.set_defaults(handler=_build)


def _add_domain_randomisation(build: argparse.ArgumentParser) -> None:
    """Options that make the renders look less alike (docs/DATA.md#domain-randomisation), all seeded per view."""
    group = build.add_argument_group("domain randomisation (seeded per view, recorded in each row's view)")
    group.add_argument(
        "--lighting",
        default="studio",
        help="studio, side, sun_sky, soft_box, low_key, or random (one preset drawn per view)",
    )
    group.add_argument(
        "--light-jitter", type=float, default=0.0, help="± degrees the light rig turns about the up axis"
    )
    group.add_argument("--fov-jitter", type=float, default=0.0, help="± degrees added to the field of view")
    group.add_argument("--distance-jitter", type=float, default=0.0, help="up to this share farther than framed")
    group.add_argument("--roll-jitter", type=float, default=0.0, help="± degrees of camera roll")
    group.add_argument("--cycles-fraction", type=float, default=0.5, help="--engine mixed: share of Cycles views")
    group.add_argument(
        "--materials",
        choices=("auto", "vertex"),
        default="auto",
        help="auto: render OBJ+MTL / glTF / GLB files with their own materials; vertex: always the plain mesh",
    )


def _background(text: str) -> tuple[int, int, int] | None:
    from ..errors import ConfigError

    named = {"white": (255, 255, 255), "black": (0, 0, 0), "transparent": None}
    if text in named:
        return named[text]
    parts = text.split(",")
    if len(parts) != 3 or not all(part.strip().isdigit() and int(part) <= 255 for part in parts):
        raise ConfigError(f"--background: expected white, black, transparent or R,G,B (0..255), got {text!r}")
    return tuple(int(part) for part in parts)


def _build(args: argparse.Namespace) -> int:
    from ..data.build import BuildSettings, build_to_folder
    from ..data.builders import collect_source
    from ..render.launcher import RenderSettings

    source = collect_source(
        args.builder,
        args.root,
        test_fraction=args.test_fraction,
        up_axis=args.up_axis,
        meshes=args.meshes,
        per_category=args.per_category,
        **({"seed": args.seed} if args.builder in ("meshfolder", "procedural") else {}),
    )
    render = RenderSettings(
        engine=args.engine,
        samples=args.samples,
        resolution=args.resolution,
        num_views=args.views,
        elevations=tuple(args.elevations),
        jitter_deg=args.jitter,
        fov_deg=args.fov,
        seed=args.seed,
        device=args.device,
        lighting=args.lighting,
        light_rotation_jitter_deg=args.light_jitter,
        fov_jitter_deg=args.fov_jitter,
        distance_jitter=args.distance_jitter,
        roll_jitter_deg=args.roll_jitter,
        cycles_fraction=args.cycles_fraction,
        materials=args.materials,
    )
    settings = BuildSettings(
        num_points=args.points,
        seed=args.seed,
        with_colors=args.colors,
        render=render,
        background=_background(args.background),
        strict=args.strict,
        blender=args.blender,
        batch_size=args.batch_size,
        threads=args.threads,
        render_jobs=args.jobs,
        progress=not args.no_progress,
    )
    folder, result = build_to_folder(source, settings, out=args.out, limit=args.limit)
    rows = ", ".join(f"{split}: {len(table)} rows" for split, table in result.dataset.items())
    timing = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.seconds.items())
    print(f"wrote {folder} ({rows}; {timing})")
    if result.failures:
        print(f"{len(result.failures)} shape(s) skipped:", file=sys.stderr)
        for failure in result.failures:
            print(f"  {failure}", file=sys.stderr)
    return 0


def _push(args: argparse.Namespace) -> int:
    from ..data.publish import push_dataset

    print(push_dataset(args.folder, args.repo_id, private=args.private, token=args.token))
    return 0


__all__ = ["add_commands"]
