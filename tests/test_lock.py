"""Two runs on one output folder: the second is refused with the first one's PID; a killed run
leaves no stale lock."""

import fcntl
import os
import signal
import subprocess
import sys

import pytest

from conftest import CLASSNAMES
from dpl_plugin.runtime.lock import LOCK_FILE, OutputLock, OutputLockedError, lock_output_dir
from dpl_plugin.search.stage import search_prompt_lengths
from dpl_plugin.search import SearchSettings
from test_search_loop import loaders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = "import sys; from dpl_plugin.runtime.lock import lock_output_dir; lock_output_dir(sys.argv[1]); print('held', flush=True); sys.stdin.read()"


def hold(folder):
    """Another process holding ``folder``'s lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), "--some-option"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("locked") / "out"
    proc = hold(folder)
    yield folder, proc
    proc.kill()
    proc.wait()


def is_locked(folder) -> bool:
    """Whether a lock is held on ``folder``, probed through a new open file description (flock
    locks belong to those, so this probe conflicts even with a lock of this same process)."""
    fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_second_run_is_refused_with_the_holders_pid(other_run):
    folder, proc = other_run
    with pytest.raises(OutputLockedError) as err:
        lock_output_dir(str(folder))
    message = str(err.value)
    assert f"{folder} is in use by process {proc.pid} on " in message and "--some-option" in message
    assert "use another output folder" in message


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    proc = hold(tmp_path)
    assert is_locked(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.isfile(tmp_path / LOCK_FILE)  # the file stays; the lock went with the process
    with OutputLock(str(tmp_path)):
        assert is_locked(tmp_path)


def test_the_lock_is_reentrant_within_a_process_and_released_at_the_end(tmp_path):
    with OutputLock(str(tmp_path)):
        with OutputLock(str(tmp_path)):
            pass
        assert is_locked(tmp_path)  # still held by the outer one
    assert not is_locked(tmp_path)


def test_the_plain_api_search_takes_the_lock_before_writing(other_run, tiny_clip):
    folder, proc = other_run
    train, val = loaders()
    with pytest.raises(OutputLockedError, match=f"process {proc.pid}"):
        search_prompt_lengths(tiny_clip, CLASSNAMES, train, val, design="ivlp", candidates=(0, 1),
                              settings=SearchSettings(epochs=1, plot=False), output_dir=str(folder))
    assert os.listdir(folder) == [LOCK_FILE]  # nothing written


def test_a_dassl_run_takes_the_lock(other_run):
    pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")
    from test_dassl_trainers import Workspace, _trainer_in_process

    folder, proc = other_run
    os.makedirs(folder.parent / "ws")
    ws = Workspace(folder.parent / "ws")
    with pytest.raises(OutputLockedError, match=f"process {proc.pid}"):
        _trainer_in_process(ws, folder, "TRAINER.DPL.MODE", "search")
    assert os.listdir(folder) == [LOCK_FILE]
