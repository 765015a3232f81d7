"""``train.py`` on bad input that only a whole run shows, batched into one set of tiny runs: a token
budget no prompt fits, a config file that is not YAML, a full disk, an empty image, a log link
planted in the output folder, and the log of a batch job (one line per epoch, no bar)."""

import os
import re
import shutil

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

from train_runs import REPO, TRAIN_PY, Run, Workspace, run_all  # noqa: E402

BASELINE = ("TRAINER.DPL.MODE", "baseline", "TRAINER.MAPLE.PROMPT_DEPTH", "2")
FILE_SIZE_LIMIT = 64 * 1024  # ulimit -f: log.txt (~11 kB) fits, a training checkpoint (~290 kB) does not
LIMITED = """import resource, runpy, sys
sys.path.insert(0, {repo!r})
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
sys.argv = [{train!r}] + sys.argv[1:]
runpy.run_path({train!r}, run_name="__main__")
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("bad_input_runs"))
    cfg_file = os.path.join(ws.root, "recipe.cfg")
    shutil.copy(os.path.join(REPO, "configs", "trainers", "DPL_MaPLe", "vit_b16.yaml"), cfg_file)
    empty_data = os.path.join(ws.root, "empty_image_data")
    shutil.copytree(ws.data, empty_data)
    folder = os.path.join(empty_data, "caltech-101", "101_ObjectCategories")
    cls = sorted(os.listdir(folder))[0]
    victim = os.path.join(folder, cls, sorted(os.listdir(os.path.join(folder, cls)))[0])
    open(victim, "w").close()
    limited = os.path.join(ws.root, "limited_train.py")
    with open(limited, "w") as f:
        f.write(LIMITED.format(repo=REPO, limit=FILE_SIZE_LIMIT, train=TRAIN_PY))
    linked = ws.run("log_link", *BASELINE, "OPTIM.MAX_EPOCH", "2")
    os.makedirs(linked.output_dir)
    os.symlink(os.path.join(ws.root, "outside", "planted_log.txt"), linked.path("log.txt"))
    full = ws.run("full_disk", *BASELINE)
    full = Run(full.args, full.output_dir, script=limited)
    first = {
        "budget": ws.run("budget", "TRAINER.DPL.SEARCH.TOKEN_BUDGET", "1"),
        "cfg": ws.run("cfg", config=cfg_file),
        "empty_image": ws.run("empty_image", *BASELINE, root=empty_data),
        "log_link": linked,
        "full_disk": full,
    }
    run_all(first.values())
    first["victim"] = victim
    return first


def test_a_token_budget_no_prompt_fits_ends_the_run_before_the_search(runs):
    run = runs["budget"]
    message = run.failed_with_one_line()
    assert re.fullmatch(r"error: TOKEN_BUDGET 1 is below the 2 tokens that the smallest configuration with any prompt "
                        r"needs \(a coupled token counts in both branches\).*Set TOKEN_BUDGET to at least 2, or 0 "
                        r"for no budget", message)
    assert not os.path.exists(run.path("search", "search_checkpoint.pth"))


def test_a_config_file_that_is_not_yaml_is_named(runs):
    message = runs["cfg"].failed_with_one_line()
    assert re.fullmatch(r"error: --config-file .*recipe\.cfg: not a YAML config file \(expected \.yaml or \.yml\): "
                        r"rename it, or write its settings as YAML", message)


def test_an_empty_image_is_named_with_its_path(runs):
    message = runs["empty_image"].failed()
    assert message.startswith("error: Caltech101: 1 of ") and "are empty (0 bytes)" in message
    assert runs["victim"] in message


def test_a_full_disk_ends_with_one_error_line_naming_the_file(runs):
    run = runs["full_disk"]
    message = run.failed_with_one_line()
    assert re.fullmatch(r"error: cannot write .*prompt_learner/model\.pth\.tar-1 \(File too large\): the file is "
                        r"larger than this process may write \(ulimit -f\).*run the same command again to resume",
                        message)
    assert not any(f.startswith(".tmp-") for f in os.listdir(run.path("prompt_learner")))


def test_a_planted_log_link_is_not_followed_and_a_batch_job_log_has_one_line_per_epoch(runs):
    run = runs["log_link"]
    out = run.ok()
    assert not os.path.exists(os.path.join(os.path.dirname(run.output_dir), "..", "outside", "planted_log.txt"))
    assert os.path.islink(run.path("log.txt"))
    logs = [f for f in os.listdir(run.output_dir) if f.startswith("log.txt-")]
    assert len(logs) == 1
    epoch_lines = re.findall(r"^epoch \[(\d)/2\]", out, re.MULTILINE)
    assert epoch_lines == ["1", "2"], out[-3000:]  # Dassl printed every batch of a short epoch
    assert "it/s" not in run.stderr and "\r" not in run.log  # no evaluation bar in a log
