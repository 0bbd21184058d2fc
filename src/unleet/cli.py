"""`unleet <stage>` runs one pipeline stage on the composed `params.yaml`; `unleet params` composes it."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from unleet import lineage
from unleet import params as params_module
from unleet.errors import UnleetError

STAGES = ("scrape", "translate", "corrupt", "tokenize", "train", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        command = commands.add_parser(stage, help=f"run the {stage} stage (as `dvc repro` does)")
        command.add_argument("--params", default=str(params_module.PARAMS_FILE), help="params file to read")
        if stage == "translate":
            command.add_argument(
                "--calibrate",
                type=int,
                metavar="N",
                help="translate a stratified sample of N comments into reports/calibration.md "
                "for review, leaving the stage output untouched",
            )
    show = commands.add_parser("lineage", help="print what a trained model was made from (its lineage.json)")
    show.add_argument("model_dir", nargs="?", default="models/unleet")
    compose = commands.add_parser("params", help="recompose params.yaml from conf/ (Hydra overrides allowed)")
    compose.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=small train.lr=1e-4")
    compose.add_argument("--output", default=str(params_module.PARAMS_FILE))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # per-file checkpoint chatter
    try:
        if args.command == "params":
            print(f"wrote {params_module.compose(args.overrides, args.output)}")
        elif args.command == "lineage":
            print(json.dumps(lineage.read(Path(args.model_dir)), indent=2))
        elif getattr(args, "calibrate", None):
            from unleet.stages import translate

            print(f"wrote {translate.calibrate(params_module.load(args.params), args.calibrate)}")
        else:
            stage = importlib.import_module(f"unleet.stages.{args.command}")
            stage.main(params_module.load(args.params))
    except UnleetError as error:
        print(f"unleet {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
