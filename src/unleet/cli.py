"""`unleet <stage>` runs one pipeline stage on the composed `params.yaml`; `unleet params` composes it."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

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
    decode = commands.add_parser(
        "decode", help="decode text given as arguments, in --file or on stdin: one output line per input line"
    )
    decode.add_argument("texts", nargs="*", help="texts to decode (none: read --file or stdin)")
    decode.add_argument("--file", type=Path, help="a UTF-8 text file, one input per line")
    decode.add_argument("--model", default="models/unleet", help="a model directory or LoRA adapter")
    decode.add_argument("--batch-size", type=int, default=64)
    decode.add_argument("--max-new-tokens", type=int, default=256)
    decode.add_argument("--num-beams", type=int, help="beams to decode with (default: as evaluated)")
    decode.add_argument(
        "--rerank",
        action=argparse.BooleanOptionalAction,
        help="let the model choose between its output, the input and the lexicon's reading (default: as evaluated)",
    )
    decode.add_argument(
        "--copy-bias",
        type=float,
        help="with --rerank, nats per input word added to leaving the input unchanged (default: as evaluated)",
    )
    decode.add_argument(
        "--slang-bias",
        type=float,
        help="with --rerank, let an output that rewrites only listed slang words share the copy bias, less "
        "this many nats per slang word (default: as evaluated)",
    )
    report = commands.add_parser(
        "report", help="Markdown + HTML report with PNG plots of a model, or of two revisions or experiments"
    )
    report.add_argument("revisions", nargs="*", help="none: the workspace; one or two git revisions or experiments")
    report.add_argument("--output", type=Path, default=Path("reports/unleet"))
    show = commands.add_parser("lineage", help="print what a trained model was made from (its lineage.json)")
    show.add_argument("model_dir", nargs="?", default="models/unleet")
    compose = commands.add_parser("params", help="recompose params.yaml from conf/ (Hydra overrides allowed)")
    compose.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=small train.lr=1e-4")
    compose.add_argument("--output", default=str(params_module.PARAMS_FILE))
    return parser


def decode(args: argparse.Namespace) -> None:
    from unleet import decoder

    if args.texts and args.file:
        raise UnleetError("give texts or --file, not both")
    if args.texts:
        texts = args.texts
    elif args.file:
        if not args.file.is_file():
            raise UnleetError(f"{args.file}: no such file")
        texts = decoder.input_lines(args.file.read_bytes(), str(args.file))
    else:
        texts = decoder.input_lines(sys.stdin.buffer.read(), "stdin")
    model = decoder.load(
        args.model, rerank=args.rerank, copy_bias=args.copy_bias, slang_bias=args.slang_bias, num_beams=args.num_beams
    )
    options = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    for line in decoder.decode_lines(model, texts, **options):
        print(line)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # per-file checkpoint chatter
    try:
        if args.command == "params":
            print(f"wrote {params_module.compose(args.overrides, args.output)}")
        elif args.command == "decode":
            decode(args)
        elif args.command == "report":
            from unleet import report

            print(f"wrote {report.build(args.output, args.revisions)}")
        elif args.command == "lineage":
            from unleet import lineage

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
