"""``tinyfront export``: write a TFLite Micro or ONNX Runtime bundle for a trial or a .tflite file."""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.commands._args import add_storage_argument
from explorer.table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a deployment bundle (TFLite Micro or ONNX Runtime) for a trial or a .tflite file",
        description="Write a ready-to-build deployment bundle as a zip: --format tflm for microcontrollers "
        "(TensorFlow Lite Micro), --format onnx for Linux boards (ONNX Runtime).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", help="study name (with --trial)")
    source.add_argument("--tflite", metavar="MODEL", type=Path, help="a .tflite model you bring")
    p.add_argument("--trial", type=int, help="trial number in the study")
    add_storage_argument(p)
    p.add_argument("--target", help="with --tflite: target name from the targets file (sets compiler flags)")
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.add_argument("--format", dest="fmt", required=True, choices=("tflm", "onnx"), help="bundle format")
    p.add_argument("-o", "--output", required=True, type=Path, help="output .zip")
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument(
        "--build",
        action="store_true",
        help="tflm: build the bundle for the target's core (arm-none-eabi-gcc), run it in QEMU and add the "
        "verified libtinyfront_model.a and image to the zip",
    )
    p.add_argument(
        "--tflm-dir", type=Path, help="with --build: TFLite Micro tree with CMSIS-NN (default: $TINYFRONT_TFLM_DIR)"
    )
    p.set_defaults(run=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    from firmware_export import BuildRequest, export_tflite_file, export_trial
    from search.storage import load_existing_study
    from search.targets import get_target

    if args.tflm_dir is not None and not args.build:
        args._parser.error("--tflm-dir goes with --build")
    build = BuildRequest(tflm_dir=args.tflm_dir) if args.build else None

    if args.study is not None:
        if args.trial is None:
            args._parser.error("--study needs --trial N")
        if args.target is not None:
            args._parser.error("--target goes with --tflite; a trial's target comes from its result")
        load_existing_study(args.storage, args.study)  # read-only check first: creates no file or table
        info = export_trial(
            args.storage, args.study, args.trial, args.output, fmt=args.fmt, force=args.force, build=build
        )
        origin = f"trial {args.trial} of study '{args.study}'"
    else:
        if args.trial is not None:
            args._parser.error("--trial goes with --study")
        target = get_target(args.target, args.targets) if args.target else None
        info = export_tflite_file(args.tflite, args.output, fmt=args.fmt, target=target, force=args.force, build=build)
        origin = str(args.tflite)
    rows = [(name, f"{size:,}") for name, size in info.files.items()]
    print(f"wrote {info.path} ({info.format} bundle of {origin})")
    print(format_table(("file", "bytes"), rows))
    if info.arena_size is not None:
        print(f"\ntensor arena: {info.arena_size:,} bytes (kTensorArenaSize)")
    if build is not None:
        print("built and verified in QEMU (see README.md, 'What was and was not checked')")
    return 0
