"""A run forked by the prewarmed interpreter behaves as the same script in a fresh interpreter:
the same exit code, output, environment, working directory, atexit and Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import prewarmed
from train_runs import process_env, start, start_fresh

SCRIPT = textwrap.dedent("""
    import atexit, os, sys, time
    atexit.register(lambda: print("atexit ran", flush=True))
    print(sys.argv[1:], os.getcwd(), os.environ.get("DPL_PROBE"), sys.path[0] == os.path.dirname(__file__))
    print("to stderr", file=sys.stderr)
    how = sys.argv[1]
    if how == "code":
        sys.exit(3)
    if how == "message":
        sys.exit("a message and exit code 1")
    if how == "raise":
        raise ValueError("boom")
    if how == "wait":
        try:
            print("waiting", flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    if how == "uncaught":
        print("waiting", flush=True)
        time.sleep(60)
""")


def outcome(proc, interrupt=False):
    first = ""
    if interrupt:  # Ctrl-C once it waits
        first = proc.stdout.readline() + proc.stdout.readline()
        assert first.endswith("waiting\n")
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, first + out, err.strip().splitlines()[-1], "to stderr" in err


@pytest.mark.parametrize("how, interrupt", [("ok", False), ("code", False), ("message", False), ("raise", False),
                                            ("wait", True), ("uncaught", True)])
def test_a_prewarmed_run_ends_as_a_fresh_interpreter_does(tmp_path, how, interrupt):
    if prewarmed.fresh_requested():
        pytest.skip("DPL_TEST_FRESH=1: every run is a fresh interpreter")
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    command, env = [sys.executable, str(script), how], process_env(DPL_PROBE="set for this run")
    forked = start(command, str(tmp_path), env)
    assert isinstance(forked, prewarmed.Process) and forked.pid != os.getpid()
    got, want = outcome(forked, interrupt), outcome(start_fresh(command, str(tmp_path), env, interruptible=True), interrupt)
    assert got == want
    assert f"['{how}'] {tmp_path} set for this run True" in got[1]
    assert got[1].endswith("atexit ran\n") and got[0] == {"ok": 0, "code": 3, "message": 1, "raise": 1,
                                                          "wait": 130, "uncaught": -signal.SIGINT}[how]


def test_a_run_past_its_timeout_is_killed_and_reported(tmp_path):
    if prewarmed.fresh_requested():
        pytest.skip("DPL_TEST_FRESH=1: every run is a fresh interpreter")
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    proc = start([sys.executable, str(script), "uncaught"], str(tmp_path), process_env())
    with pytest.raises(subprocess.TimeoutExpired):
        proc.communicate(timeout=2)
    assert proc.returncode == -signal.SIGKILL
    killed = start([sys.executable, str(script), "uncaught"], str(tmp_path), process_env())
    assert killed.stdout.readline().startswith("['uncaught']") and killed.stdout.readline() == "waiting\n"
    killed.kill()  # killed, but not by a timeout: its outcome, not an error
    assert killed.communicate(timeout=60)[1].strip() == "to stderr" and killed.returncode == -signal.SIGKILL
