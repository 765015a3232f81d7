"""Bad input, injected one fault at a time: each ends with one clear message of the project's own
types (naming the file or key and the fix), nothing runs as code, nothing already written is lost,
and no write follows a link out of the output folder."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import CLASSNAMES
from dpl_plugin import PromptConfig, build_prompted_clip, build_supernet, get_design, train_prompts
from dpl_plugin.engine.checkpoint import CorruptCheckpointError, load_checkpoint, save_checkpoint
from dpl_plugin.engine.optim import build_sgd
from dpl_plugin.engine.training import TrainSettings
from dpl_plugin.errors import ArgumentTypeError, OptionError
from dpl_plugin.prompting.text_inputs import build_prompts
from dpl_plugin.runtime.atomic import atomic_write
from dpl_plugin.runtime.lock import LOCK_FILE, OutputLockedError, lock_output_dir
from dpl_plugin.runtime.safe_files import UnwritableOutputError
from dpl_plugin.search import BilevelSearch, SearchSettings
from dpl_plugin.search.definition import DEFINITION_FILE, SearchDefinitionMismatchError, check_unfinished
from dpl_plugin.search.discretize import TokenBudgetError
from dpl_plugin.search.stage import search_prompt_lengths
from test_lock import hold
from test_search_loop import loaders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- no write follows a link; the lock comes first -------------------------------------------------
def test_a_link_planted_as_the_lock_file_is_refused_and_its_target_untouched(tmp_path):
    out, target = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    target.write_text("keep me")
    os.symlink(target, out / LOCK_FILE)
    with pytest.raises(UnwritableOutputError, match=r"\.dpl\.lock .*symbolic link: remove the link"):
        lock_output_dir(str(out))
    assert target.read_text() == "keep me"


def test_a_dangling_log_link_is_not_followed_and_a_refused_run_writes_no_log(tmp_path):
    pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")
    from dpl_plugin.dassl.log_file import setup_log_file

    out, outside = tmp_path / "out", tmp_path / "outside" / "planted.txt"
    out.mkdir()
    outside.parent.mkdir()
    os.symlink(outside, out / "log.txt")
    stdout = sys.stdout
    try:
        path = setup_log_file(str(out))
        print("a line of the run")
        sys.stdout.flush()
    finally:
        sys.stdout = stdout
    assert not outside.exists() and os.path.islink(out / "log.txt")
    assert os.path.basename(path).startswith("log.txt-") and "a line of the run" in open(path).read()

    busy = tmp_path / "busy"
    proc = hold(busy)  # another run holds the folder
    try:
        with pytest.raises(OutputLockedError, match=f"process {proc.pid}"):
            setup_log_file(str(busy))
        assert os.listdir(busy) == [LOCK_FILE]  # no log.txt-<time> left in the running run's folder
    finally:
        sys.stdout = stdout
        proc.kill()
        proc.wait()


# -- a full disk, a damaged file -------------------------------------------------------------------
FULL_DISK = """
import resource, sys, torch
from dpl_plugin.runtime import cli
from dpl_plugin.engine.checkpoint import save_checkpoint
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the stand-in for a full disk (ulimit -f)
sys.exit(cli.run(lambda: save_checkpoint({"x": torch.zeros(10000)}, sys.argv[1])))
"""


def test_a_full_disk_ends_with_one_error_line_and_keeps_the_previous_file(tmp_path):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint({"x": torch.ones(3)}, str(path))
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"error: cannot write {path} (File too large): ")
    assert "ulimit -f" in proc.stderr and "run the same command again to resume" in proc.stderr
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pth"]


def test_atomic_write_names_the_file_of_an_operating_system_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(UnwritableOutputError, match=r"cannot write .*not_a_folder/x\.json"):
        with atomic_write(str(blocker / "x.json"), "w") as f:  # ENOTDIR: the parent is a file
            f.write("{}")


def test_an_output_folder_that_cannot_be_made_is_named_when_the_lock_is_taken(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UnwritableOutputError, match=r"cannot write .*file/out \(.*\): a file stands where a folder"):
        lock_output_dir(str(tmp_path / "file" / "out"))


def test_a_checkpoint_with_flipped_bytes_is_refused_by_its_zip_crc(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"prompts": torch.randn(5000)}, str(path))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 2000] = bytes(2000)  # in place: torch.load would read garbage
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match=r"ckpt\.pth is corrupt: its record .* fails the zip archive's "
                                                     r"CRC check .*Delete it to start over"):
        load_checkpoint(str(path))


@pytest.mark.parametrize("content", ["", "{\"SEED\": 1", "[1, 2]"])
def test_a_damaged_search_definition_names_the_file_and_the_fix(tmp_path, content):
    (tmp_path / DEFINITION_FILE).write_text(content)
    with pytest.raises(SearchDefinitionMismatchError, match=r"definition\.json is damaged .*delete .*definition\.json "
                                                            r"and run again: the search resumes from its checkpoint"):
        check_unfinished(str(tmp_path), {"SEED": 1}, resuming=True)


# -- options and API arguments ---------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [("5", "a whole number, got str '5'"), (2.5, "a whole number, got float"),
                                             (True, "a whole number, got bool")])
def test_settings_of_the_wrong_type_are_named(value, expected):
    with pytest.raises(ArgumentTypeError, match=r"SearchSettings\.epochs \(EPOCHS\) must be " + expected):
        SearchSettings(epochs=value)
    with pytest.raises(ArgumentTypeError, match=r"TrainSettings\.epochs must be " + expected):
        TrainSettings(epochs=value)
    with pytest.raises(ArgumentTypeError, match=r"SearchSettings\.temperature \(TEMPERATURE\) must be"):
        SearchSettings(temperature=("1", 0.1))


def test_a_negative_alpha_learning_rate_is_an_option_error():
    with pytest.raises(OptionError, match="ALPHA_LR must be a positive learning rate, got -0.1"):
        SearchSettings(alpha_lr=-0.1).resolved()


def test_class_names_as_one_string_or_not_strings_are_refused(tiny_clip):
    with pytest.raises(ArgumentTypeError, match=r"classnames must be a list of class names, got str 'abc'.*\['abc'\]"):
        build_prompts("abc")
    with pytest.raises(ArgumentTypeError, match="class names must be strings, got int 3"):
        build_supernet(tiny_clip, ["cat", 3])
    with pytest.raises(ArgumentTypeError, match="classnames must be a list"):
        build_prompted_clip(tiny_clip, {"cat": 0}, PromptConfig(text=[1, 0, 0], vision=[0, 0, 0]))


def test_dicts_where_objects_are_expected_are_named(tiny_clip):
    train, val = loaders()
    with pytest.raises(ArgumentTypeError, match=r"settings must be a SearchSettings, got dict .*SearchSettings\(\*\*d\)"):
        search_prompt_lengths(tiny_clip, CLASSNAMES, train, val, design="ivlp", candidates=(0, 1),
                              settings={"epochs": 1})
    with pytest.raises(ArgumentTypeError, match=r"config must be a PromptConfig, got dict .*PromptConfig\.from_dict"):
        build_prompted_clip(tiny_clip, CLASSNAMES, {"text": [1, 0, 0], "vision": [0, 0, 0]})
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig(text=[1, 0, 0], vision=[0, 0, 0]))
    with pytest.raises(ArgumentTypeError, match=r"train_prompts' settings must be a TrainSettings, got dict"):
        train_prompts(model, train, {"epochs": 1})


def test_a_token_budget_no_prompt_fits_is_refused_before_the_search(tiny_clip):
    model = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 2), **get_design("maple").search_space())
    train, val = loaders()
    optimizer = build_sgd(model.prompt_learner.prompt_parameters(), lr=0.01)
    with pytest.raises(TokenBudgetError, match=r"TOKEN_BUDGET 1 is below the 2 tokens .*coupled token counts in both "
                                               r"branches.*at least 2, or 0"):
        BilevelSearch(model, train, val, optimizer, settings=SearchSettings(epochs=1, token_budget=1))
    BilevelSearch(model, train, val, optimizer, settings=SearchSettings(epochs=1, token_budget=2))  # fits one layer


# -- the Dassl side: config files, options, data ---------------------------------------------------
dassl = pytest.importorskip  # used below, inside the tests, so that the plain tests run without Dassl


def _cfg():
    dassl("dassl", reason="Dassl is not installed")
    from dassl.config import get_cfg_default

    from dpl_plugin.dassl import extend_cfg
    return extend_cfg(get_cfg_default())


def test_config_files_must_be_yaml_and_are_never_executed(tmp_path):
    from dpl_plugin.dassl.options import merge_file

    marker = tmp_path / "code_ran"
    python_config = tmp_path / "x.py"
    python_config.write_text(f"open({str(marker)!r}, 'w')\nfrom yacs.config import CfgNode\ncfg = CfgNode()\n")
    with pytest.raises(OptionError, match=r"--config-file .*x\.py: Python config files are not accepted .*\.yaml"):
        merge_file(_cfg(), str(python_config))
    assert not marker.exists()
    other = tmp_path / "x.cfg"
    other.write_text("SEED: 1\n")
    with pytest.raises(OptionError, match=r"x\.cfg: not a YAML config file \(expected \.yaml or \.yml\)"):
        merge_file(_cfg(), str(other))


@pytest.mark.parametrize("key, value", [("TRAINER.DPL.SEARCH.ALPHA_LR", -0.1), ("TRAINER.DPL.SEARCH.LR", -1.0),
                                        ("OPTIM.LR", 0.0)])
def test_non_positive_learning_rates_are_option_errors(key, value):
    from dpl_plugin.dassl.config import check_dpl_cfg

    cfg = _cfg()
    cfg.merge_from_list([key, value])
    with pytest.raises(OptionError, match=f"{key.split('.')[-1]} must be a positive learning rate"):
        check_dpl_cfg(cfg)


def test_more_shots_than_images_warn_once_and_the_real_count_is_kept(tmp_path, capsys):
    dassl("dassl", reason="Dassl is not installed")
    from dassl_data import write_caltech101
    from test_dassl_datasets import build, per_class

    from dpl_plugin.dassl.datasets.coop_format import shots_per_class

    write_caltech101(tmp_path, num_classes=2, images_per_class=10)
    ds = build(tmp_path, "Caltech101", shots=16, seed=1)
    real = shots_per_class(ds.train_x)
    assert 0 < real < 16 and min(per_class(ds.train_x).values()) == real
    out = capsys.readouterr().out
    assert out.count("Warning: DATASET.NUM_SHOTS is 16") == 1
    assert f"only {real} training images in its smallest class" in out and f"record {real} shots" in out


def test_an_empty_image_is_named_when_the_data_are_read(tmp_path):
    dassl("dassl", reason="Dassl is not installed")
    from dassl_data import write_caltech101
    from test_dassl_datasets import build

    from dpl_plugin.dassl.datasets import DatasetLayoutError

    write_caltech101(tmp_path, num_classes=2, images_per_class=10)
    with open(os.path.join(tmp_path, "caltech-101", "split_zhou_Caltech101.json")) as f:
        first = json.load(f)["train"][0][0]
    open(os.path.join(tmp_path, "caltech-101", "101_ObjectCategories", first), "w").close()  # 0 bytes
    with pytest.raises(DatasetLayoutError, match=r"1 of \d+ images listed in .* are empty \(0 bytes\):\n  .*"
                                                 + os.path.basename(first)):
        build(tmp_path, "Caltech101")


def test_the_search_records_the_shots_the_data_really_have(tmp_path_factory, tmp_path):
    dassl("dassl", reason="Dassl is not installed")
    from test_dassl_trainers import Workspace, _trainer_in_process

    from dpl_plugin.dassl.datasets.coop_format import shots_per_class

    ws = Workspace(tmp_path_factory.mktemp("shots"))
    trainer = _trainer_in_process(ws, tmp_path, "DATASET.NUM_SHOTS", "16", "TRAINER.DPL.MODE", "search")
    real = shots_per_class(trainer.dm.dataset.train_x)
    assert 0 < real < 16 and trainer._shots() == real  # what provenance["shots"] records
