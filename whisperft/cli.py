"""The `whisperft` command: a thin dispatcher over subcommands.

Each subcommand lives next to the code it drives and exposes
``add_parser(subparsers)``; those modules import their heavy stacks (torch,
kopf) only inside the command function, so ``--help`` stays fast and the
operator image never needs the trainer's dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from whisperft import __version__

# Modules that each add subcommands; one whose extra is not installed (the
# operator image has no torch) is skipped with a note in --help.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "whisperft.trainer.cli_train",
    "whisperft.trainer.cli_evaluate",
    "whisperft.trainer.cli_model",
    "whisperft.trainer.cli_fetch",
    "whisperft.operator.cli",
    "whisperft.operator.cli_plan",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisperft",
        description=(
            "Fine-tune OpenAI Whisper with Ray Train and DeepSpeed, locally or on "
            "Kubernetes through the WhisperFineTune operator."
        ),
    )
    parser.add_argument("--version", action="version", version=f"whisperft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an extra that is not installed
            if exc.name and exc.name.startswith("whisperft"):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
