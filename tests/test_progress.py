"""Progress output: a bar only on a terminal, one line per epoch always (dpl_plugin.engine.progress)."""

import contextlib
import fcntl
import io
import os
import select
import struct
import termios

from dpl_plugin.engine.progress import EpochProgress, format_duration


def _run_epoch(batches, **kwargs):
    progress = EpochProgress(batches, "search 2/5", epoch=2, epochs=5, **kwargs)
    for i, _ in enumerate(progress):
        progress.set_postfix(train=f"{1.0 / (i + 1):.3f}", val="0.500")
    return progress


def test_without_a_terminal_an_epoch_prints_one_line_and_no_bar():
    out, err = io.StringIO(), io.StringIO()  # a log file: not a terminal
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        _run_epoch(list(range(50)))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and err.getvalue() == ""
    assert lines[0].startswith("search 2/5 | train 0.020 val 0.500 | 0:00:00, ETA 0:00:00")


def _read_available(fd) -> str:
    chunks = []
    while select.select([fd], [], [], 1.0)[0]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_the_bar_is_drawn_there_and_the_epoch_line_still_printed():
    master, slave = os.openpty()  # a real terminal, 100 columns wide
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with os.fdopen(slave, "w") as terminal, io.StringIO() as out:
        assert terminal.isatty()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(terminal):
            _run_epoch(list(range(3)))
        terminal.flush()
        drawn = _read_available(master)
        assert "search 2/5:" in drawn and "/3 [" in drawn  # the live bar went to the terminal
        assert out.getvalue().count("\n") == 1 and "ETA" in out.getvalue()
    os.close(master)


def test_disabled_progress_prints_nothing_and_an_interrupted_epoch_no_line():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _run_epoch(list(range(3)), enabled=False)
        progress = EpochProgress(list(range(3)), "train 1/1")
        for _ in progress:
            break  # e.g. a NaN loss stopped the epoch: no line claims it finished
    assert out.getvalue() == ""


def test_estimate_of_the_time_left_is_the_epoch_time_times_the_epochs_left():
    progress = EpochProgress([], "train 3/10", epoch=3, epochs=10)
    assert progress.line(90.0) == "train 3/10 | 0:01:30, ETA 0:10:30"
    assert format_duration(3725) == "1:02:05"
    assert EpochProgress(iter([1]), "x").total is None and EpochProgress([1, 2], "x").total == 2
