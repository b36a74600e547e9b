"""Command-line flags several commands share, declared once (no torch here: ``--help`` stays fast).

The flip-TTA default lives here: every command that predicts (train's test report, evaluate,
predict, serve, the ONNX export) mirrors each face and averages the two predictions unless told
``--no-tta``, so figures from one command match the others'.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional

#: Mirror-TTA unless ``--no-tta``: on 2 CPU cores it costs 2x the compute and gave UTKFace age MAE
#: 4.69 vs 4.76 without (docs/export.md); every command that predicts uses this one default.
TTA_DEFAULT = True

TTA_HELP = ("also predict the mirrored face and average the two (probabilities, years); "
            "--no-tta halves the compute")
DEVICE_HELP = "auto (the first CUDA device if there is one, else cpu), cpu, cuda or cuda:N"
TRUST_HELP = ("load an old .pt checkpoint even if it holds pickled Python objects beyond tensors; a pickle "
              "can run code when loaded, so only for files from a source you trust")


def add_tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA_DEFAULT, help=TTA_HELP)


BF16_HELP = ("bfloat16 autocast on the CPU, where the CPU computes it natively (AVX512-BF16/AMX; ignored, with a "
             "warning, elsewhere); docs/evaluate.md has the paired fp32-vs-bf16 check behind this rule "
             "(default: as the model was trained, its run's train.bf16; fp32 for an export)")


def add_bf16_flag(parser: argparse.ArgumentParser, default) -> None:
    """``--bf16/--no-bf16`` with ``default`` (facefair.inference.DEFAULTS.bf16: None means where native)."""
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=default, help=BF16_HELP)


def add_device_flag(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, help=DEVICE_HELP)


#: Fewer faces than this give statistics too noisy to replace the training set's (``--adapt-bn``);
#: here, not in facefair.inference.adapt, so the help text says it without importing torch.
ADAPT_MIN_FACES = 64
ADAPT_BN_HELP = ("re-estimate the network's BatchNorm statistics over these faces (their images, not their labels) "
                 "before predicting them: test-time adaptation to a source unlike the training photos, for a set "
                 f"of at least {ADAPT_MIN_FACES} faces from one source (with --detect: every face found in the photos; "
                 "answers then depend on the set); "
                 "docs/transfer.md has what it did over three seeds")


def add_adapt_bn_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapt-bn", action="store_true", help=ADAPT_BN_HELP)


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)


#: A help text that already says its default ("(default 1000)", "default: the CSV's") gets no second one.
_SAYS_DEFAULT = re.compile(r"\bdefault[: ]", re.IGNORECASE)


def default_note(action: argparse.Action) -> str:
    """`` (default: ...)`` for ``action``'s help, or '' where it would mislead or repeat: a switch
    (``--no-progress`` stores False, so its default True means "the bar is on", not "the switch is");
    an option whose help already names its default; no default at all.  A ``--x/--no-x`` pair
    names the spelling that is on by default (``(default: --tta)``), not True/False."""
    text = action.help or ""
    if not action.option_strings or action.default in (None, argparse.SUPPRESS) or _SAYS_DEFAULT.search(text):
        return ""
    if isinstance(action, argparse.BooleanOptionalAction):
        on, off = action.option_strings[0], next((o for o in action.option_strings if o.startswith("--no-")), None)
        return f" (default: {on if action.default else off or 'off'})"
    if action.nargs == 0:  # store_true / store_false / store_const: the flag itself is the only value
        return ""
    if action.default is False:
        return ""
    return " (default: %(default)s)"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, said once and the way the user types it (see
    ``default_note``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if isinstance(action, argparse.BooleanOptionalAction):
            # Python 3.10 appends this itself and would print True/False: the note below says it better.
            text = text.removesuffix(" (default: %(default)s)")
        if "%(default)" in text:
            return text
        return text + default_note(action)


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command parser below it the defaults formatter; options with no
    help text get one, so ``--help`` lists every default (``--size``, ``--split``, ``--tta`` ...)."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if not action.help and default_note(action):
            action.help = default_note(action).strip()  # argparse prints no line at all for an option without help
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                show_defaults(sub)


LAYOUT_HELP = ("label folders: the attribute of each folder level, e.g. gender/race ('-' for a level that is no "
               "label); default: detected from the folder names")
LABEL_MAP_HELP = ("label spellings the built-in vocabularies do not read: YAML files ({race: {RAW: LABEL}}) or "
                  "ATTRIBUTE:RAW=LABEL, e.g. race:latinx=hispanic")


def add_chip_flags(parser, defaults, min_face: bool = True) -> None:
    """``--max-side``, ``--chip-size``, ``--padding`` (and ``--min-face``): how a raw photo becomes
    face chips, with one meaning and one set of defaults (``facefair.inference.DEFAULTS``, passed in
    so this module stays below inference) in predict, evaluate and serve."""
    if min_face:
        parser.add_argument("--min-face", type=int, default=defaults.min_face, help="skip faces smaller than this (px)")
    parser.add_argument("--max-side", type=int, default=defaults.max_side,
                        help="photos are shrunk to this longer side before faces are detected and cut "
                             "(the same in predict, evaluate and serve; 0: never)")
    parser.add_argument("--chip-size", type=int, default=defaults.chip_size,
                        help="aligned chip size before resizing to the model")
    parser.add_argument("--padding", type=float, default=defaults.padding,
                        help="chip padding (default: the one measured on the model's training chips, else "
                             "FairFace's 0.25)")


def add_layout_flags(parser) -> None:
    """``--layout`` and ``--label-map``: how a dataset's folders and spellings read as labels
    (the same two settings as ``data.layout`` / ``data.label_map`` in a training config)."""
    parser.add_argument("--layout", help=LAYOUT_HELP)
    parser.add_argument("--label-map", nargs="+", default=[], metavar="MAP", help=LABEL_MAP_HELP)


#: The destinations of output-folder flags: every command's ``--out``, and train's (``--out``/``--out-dir``).
OUT_FOLDER_DESTS = ("out", "train.out_dir")


def output_folder_problem(args: argparse.Namespace) -> Optional[str]:
    """Why the output folder the command line names cannot be one (it is an existing file), or None.

    Checked once, before any command starts, so no command gets as far as a traceback from
    ``mkdir``.  A command whose ``--out`` may also be a file sets ``out_file_suffix`` (``clean``:
    ``.csv``)."""
    for dest in OUT_FOLDER_DESTS:
        value = getattr(args, dest, None)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        suffix = getattr(args, "out_file_suffix", None)
        if dest == "out" and suffix and path.suffix.lower() == suffix:
            continue
        if path.exists() and not path.is_dir():
            return (f"--out {value} is a file, but --out names a folder that the output files are written into: "
                    f"give a folder's path")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            return f"--out {value}: {parent} is a file, not a folder"
    return None
