"""`hf-cmah serve`: the JSON API and the Gradio page on one port."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve shape search: JSON API (/api/v1) + web page (/)",
        description="Without --model/--index (or HF_CMAH_MODEL/HF_CMAH_INDEX, or --config) it serves the "
        "quickstart's sample library, building it first when it is missing.",
    )
    serve.add_argument("--model", action="append", default=[], help="model folder or Hub id (repeat per library)")
    serve.add_argument(
        "--index", action="append", default=[], help="index folder or Hub dataset id, paired with --model"
    )
    serve.add_argument("--name", action="append", default=[], help="library name per --model (default: the index's)")
    serve.add_argument("--config", help="YAML file: `libraries: [{name, model, index}, ...]`")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve the network)")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--allow-writes", action="store_true", help="enable POST/DELETE /api/v1/shapes (needs a token)")
    serve.add_argument("--token-file", help="file holding the write token (default: $HF_CMAH_TOKEN)")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body accepted")
    serve.add_argument("--max-image-megapixels", type=float, default=64.0, help="largest query image accepted")
    serve.add_argument("--workers", type=int, default=2, help="inference threads")
    serve.add_argument("--queue-size", type=int, default=32, help="requests waiting beyond the workers before 503")
    serve.add_argument(
        "--torch-threads", type=int, default=None, help="torch intra-op threads (default: cores / workers)"
    )
    serve.add_argument("--example", action="append", default=[], help="an example query image for the page (repeat)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=run_serve)


def service_settings(args: argparse.Namespace):
    """The ServiceSettings of the command line: flags, else --config, else the environment."""
    from ..service.sample import sample_examples
    from ..service.settings import ServiceSettings, libraries_from_env, libraries_from_yaml, library_specs, read_token

    if args.config and args.model:
        from ..errors import ConfigError

        raise ConfigError("--config: give libraries either in a file or with --model/--index, not both")
    libraries = library_specs(args.model, args.index, args.name) if args.model or args.index else ()
    libraries = libraries or (libraries_from_yaml(args.config) if args.config else libraries_from_env())
    return ServiceSettings(
        libraries=libraries,
        allow_writes=args.allow_writes,
        token=read_token(args.token_file),
        max_upload_mb=args.max_upload_mb,
        max_image_pixels=int(args.max_image_megapixels * 1e6),
        workers=args.workers,
        queue_size=args.queue_size,
        torch_threads=args.torch_threads,
        examples=tuple(args.example) or (() if libraries else sample_examples()),
    )


def run_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from ..service.app import create_app
    from ..service.libraries import LibraryRegistry

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = service_settings(args)
    registry = LibraryRegistry()
    if settings.libraries:
        registry.load(settings.libraries)  # before binding: a model that did not make its index stops here, clearly
    app = create_app(settings, registry)
    print(f"hf-cmah serve: http://{args.host}:{args.port}/ (API: /api/v1, docs: /api/docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level=args.log_level)
    return 0
