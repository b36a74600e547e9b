"""The command line: `--help` is fast (no torch imported), shows every default, and the commands
that predict share one flip-TTA default."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from facefair.cli import build_parser
from facefair.flags import TTA_DEFAULT

HEAVY = ("torch", "timm", "torchvision")


def _subparsers(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subparsers(sub, (*prefix, name))


def test_help_of_every_command_imports_no_torch():
    # A fresh interpreter: the test process itself has torch loaded already.
    code = ("import sys, argparse\n"
            "from facefair.cli import build_parser\n"
            "parser = build_parser(); parser.format_help()\n"
            "todo = [parser]\n"
            "while todo:\n"
            "    p = todo.pop()\n"
            "    p.format_help()\n"
            "    todo += [s for a in p._actions if isinstance(a, argparse._SubParsersAction) for s in a.choices.values()]\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_entry_point_help_runs():
    done = subprocess.run([sys.executable, "-m", "facefair", "predict", "--help"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "--detect" in done.stdout and "--decode-workers" in done.stdout


def _help(*command: str) -> str:
    parser = build_parser()
    for sub_path, sub in _subparsers(parser):
        if sub_path == command:
            return " ".join(sub.format_help().split())  # argparse wraps lines; compare on words
    raise AssertionError(f"no command {command}")


@pytest.mark.parametrize("command, shown", [
    (("predict",), ["--batch-size BATCH_SIZE faces per forward pass (default: 64)", "(default: predictions)"]),
    (("evaluate",), ["(default: test)", "(default: auto)"]),
    (("describe",), ["(default: 500)"]),
    (("baseline",), ["(default: 32)", "(default: 100)"]),
    (("train",), ["--epochs"]),
    (("mitigate", "thresholds"), ["(default: equalized_odds)"]),
])
def test_help_shows_defaults(command, shown):
    text = _help(*command)
    for needle in shown:
        assert needle in text, (command, needle)


@pytest.mark.parametrize("command", [("evaluate",), ("predict",), ("serve",), ("export",)])
def test_every_command_that_predicts_has_the_one_tta_default(command):
    parser = dict(_subparsers(build_parser()))[command]
    tta = next(a for a in parser._actions if "--tta" in a.option_strings)
    assert tta.default is TTA_DEFAULT
    assert f"(default: --{'' if TTA_DEFAULT else 'no-'}tta)" in " ".join(parser.format_help().split())


def _option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return " ".join(parser._get_formatter()._expand_help(action).split()) if action.help else ""


def test_every_option_says_its_default_once_and_the_way_it_is_typed():
    # Issue 32: "--no-progress no progress bar (default: True)" read as if the bar were off;
    # audit's "--n-boot ... (default 1000) (default: 1000)" said it twice.
    wrong = []
    for command, parser in [(("facefair",), build_parser()), *_subparsers(build_parser())]:
        for action in parser._actions:
            text = _option_help(parser, action)
            if len(re.findall(r"\bdefault[: ]", text, re.IGNORECASE)) > 1:
                wrong.append((command, action.option_strings, text))
            if action.nargs == 0 and re.search(r"default: (True|False)", text):
                wrong.append((command, action.option_strings, text))
    assert not wrong, wrong[:10]


@pytest.mark.parametrize("command, option, shown", [
    (("predict",), "--no-progress", "no progress bar"),
    (("predict",), "--tta", "(default: --tta)"),
    (("predict",), "--bf16", "(default: as the model was trained, its run's train.bf16; fp32 for an export)"),
    (("train",), "--amp", "(default: --amp)"),
    (("audit",), "--n-boot", "(0: no intervals; default 1000)"),
])
def test_switch_help_reads_right(command, option, shown):
    parser = dict(_subparsers(build_parser()))[command]
    action = next(a for a in parser._actions if option in a.option_strings)
    assert _option_help(parser, action).endswith(shown)


def test_train_takes_out_like_every_other_command_and_out_dir_still_works():
    # --out used to work only as argparse's abbreviation of --out-dir, which help never showed.
    assert "--out OUT_DIR, --out-dir OUT_DIR run folder" in _help("train")
    for flag in ("--out", "--out-dir"):
        assert build_parser().parse_args(["train", flag, "somewhere"]).__dict__["train.out_dir"] == "somewhere"


def test_predict_photos_is_gone():
    assert "predict-photos" not in dict(_subparsers(build_parser())).keys()
    assert ("predict-photos",) not in dict(_subparsers(build_parser()))


def test_a_config_typo_fails_before_torch_is_loaded(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian:\n  epochs: 1\n")
    code = ("import sys\n"
            "from facefair.cli import main\n"
            f"try:\n    code = main(['train', '--config', {str(bad)!r}])\n"
            "except SystemExit as stop:\n    code = stop.code\n"
            "print('exit', code)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "unknown section 'trian' (did you mean 'train'?)" in done.stderr
    assert done.stdout.strip().splitlines() == ["exit 2", "[]"]
