"""Expected errors under one base class, how a command line ends on them, and file permissions."""

import os
import stat
import subprocess
import sys

import pytest

from dpl_plugin.runtime import cli
from dpl_plugin.runtime.atomic import atomic_write, current_umask
from dpl_plugin.backbones.openai_clip import CorruptWeightsError, WeightsNotFoundError
from dpl_plugin.engine.checkpoint import CheckpointNotFoundError, CorruptCheckpointError, load_checkpoint
from dpl_plugin.prompt_config import PromptConfigError
from dpl_plugin.errors import DPLError, OptionError
from dpl_plugin.search.bilevel import SearchStateMismatchError
from dpl_plugin.errors import NonFiniteLossError
from dpl_plugin.prompting.text_inputs import ContextOverflowError


@pytest.mark.parametrize("error, builtin", [
    (PromptConfigError, ValueError), (OptionError, ValueError), (WeightsNotFoundError, FileNotFoundError),
    (CorruptWeightsError, RuntimeError), (NonFiniteLossError, FloatingPointError),
    (SearchStateMismatchError, ValueError), (ContextOverflowError, ValueError),
    (CorruptCheckpointError, RuntimeError), (CheckpointNotFoundError, FileNotFoundError),
])
def test_expected_errors_share_one_base_and_keep_their_builtin_one(error, builtin):
    assert issubclass(error, DPLError) and issubclass(error, builtin)


def test_a_missing_checkpoint_is_an_expected_error(tmp_path):
    with pytest.raises(DPLError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "none.pth"))


def _main_raising(error):
    def main():
        raise error
    return main


def test_cli_ends_an_expected_error_with_its_message_alone(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    code = cli.run(_main_raising(PromptConfigError("max_length must be 6 or more: raise max_length")))
    out, err = capsys.readouterr()
    assert code == 1 and err == "error: max_length must be 6 or more: raise max_length\n" and out == ""


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cli_debug_shows_the_traceback_too(capsys, monkeypatch, how):
    monkeypatch.setenv(cli.DEBUG_ENV, "1" if how == "env" else "0")
    code = cli.run(_main_raising(OptionError("bad option")), debug=how == "flag")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback (most recent call last)" in err and err.endswith("error: bad option\n")


def test_cli_ctrl_c_exits_130_and_says_how_to_resume(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.run(_main_raising(KeyboardInterrupt())) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run the same command again to resume" in err


def test_cli_lets_a_bug_keep_its_traceback():
    with pytest.raises(ZeroDivisionError):
        cli.run(lambda: 1 / 0)
    assert cli.run(lambda: None) == 0


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_honour_the_umask_like_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_write(str(tmp_path / "result.yaml"), "w") as f:
            f.write("text: [1]\n")
        with open(tmp_path / "log.txt", "w") as f:  # how Dassl creates log.txt
            f.write("log\n")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(os.stat(tmp_path / "result.yaml").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "log.txt").st_mode) == 0o666 & ~umask


def test_importing_the_library_prints_no_warning():
    """clip's own pkg_resources deprecation notice is silenced where the project imports clip."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-W", "default", "-c", "import dpl_plugin, dpl_plugin.backbones.openai_clip"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "pkg_resources" not in proc.stderr, proc.stderr
