"""A prewarmed interpreter for the tests' ``python SCRIPT ARGS`` runs.

A fresh interpreter spends about 7 CPU-seconds here importing torch, torchvision, clip and Dassl,
more than most of the tests' runs spend on anything else, and the suite starts dozens of them. The
server below imports those third-party packages once (never this repository's code nor a fork's)
and forks one process per run. Each run is still a real process: its own pid, exit code, stdout and
stderr pipes, environment, working directory and signals (Ctrl-C raises KeyboardInterrupt), and it
imports the code under test (``dpl_plugin``, ``train.py``, a fork's ``trainers``) afresh, then exits
as an interpreter does (``sys.exit`` codes, a traceback and 1 for an uncaught exception, atexit).

What differs from a fresh interpreter: the third-party packages' import-time side effects happened
once, in the server (their import-time warnings are not printed per run), and every run shares the
server's hash seed. ``DPL_TEST_FRESH=1`` runs every run in a fresh interpreter instead.

    python tests/prewarmed.py SOCKET   # the server (started by :func:`start`)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Dict, List, Optional, Sequence

THIRD_PARTY = ("torch", "torchvision", "clip", "yacs.config", "dassl.config", "dassl.data", "dassl.engine",
               "dassl.utils")


def fresh_requested() -> bool:
    return os.environ.get("DPL_TEST_FRESH", "") not in ("", "0")


# -- the client: a Popen-like process ---------------------------------------------------------------
class Process:
    """One run forked by the server: ``pid``, text ``stdout``/``stderr`` pipes, ``send_signal``,
    ``communicate`` and ``returncode``, as :class:`subprocess.Popen` has them."""

    def __init__(self, server: "Server", command: Sequence[str], cwd: str, env: Dict[str, str]):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.connect(server.path)
            request = json.dumps({"argv": list(command[1:]), "cwd": cwd, "env": env}).encode() + b"\n"
            socket.send_fds(self._conn, [request], [out_w, err_w])
        finally:
            os.close(out_w)
            os.close(err_w)
        self._replies = self._conn.makefile("r")
        self.pid = int(self._replies.readline())
        self.stdout = os.fdopen(out_r, "r")
        self.stderr = os.fdopen(err_r, "r")
        self.returncode: Optional[int] = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # it has just ended
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: Optional[float] = None):
        """The rest of stdout and stderr, read together (neither pipe can fill and block the run);
        past ``timeout`` seconds the run is killed and :class:`subprocess.TimeoutExpired` raised."""
        if self.stdout.closed:  # read already (a second call after a timeout)
            return "", ""
        timed_out = threading.Event()
        timer = threading.Timer(timeout, lambda: (timed_out.set(), self.kill())) if timeout else None
        err: List[str] = []
        reader = threading.Thread(target=lambda: err.append(self.stderr.read()), daemon=True)
        reader.start()
        if timer:
            timer.start()
        out = self.stdout.read()
        reader.join()
        self.wait()
        if timer:
            timer.cancel()
        self.stdout.close()
        self.stderr.close()
        if timed_out.is_set():
            raise subprocess.TimeoutExpired(str(self.pid), timeout, out, "".join(err))
        return out, "".join(err)

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = int(self._replies.readline())
            self._replies.close()
            self._conn.close()
        return self.returncode


class Server:
    """The prewarmed interpreter, started with ``env`` (the runs' base environment: the thread
    counts are read when torch loads)."""

    def __init__(self, env: Dict[str, str]):
        self._dir = tempfile.mkdtemp(prefix="dpl-prewarmed-")
        self.path = os.path.join(self._dir, "socket")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), self.path], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        ready = self.proc.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the prewarmed interpreter did not start (exit code {self.proc.poll()})")

    def popen(self, command: Sequence[str], cwd: str, env: Dict[str, str]) -> Process:
        return Process(self, command, cwd, env)

    def close(self) -> None:
        self.proc.terminate()  # it waits for its runs first
        self.proc.wait()
        shutil.rmtree(self._dir)


# -- the server ---------------------------------------------------------------------------------------
def serve(path: str) -> None:
    import importlib
    import warnings

    # train.py reads this before anything imports tqdm (Dassl's): set for a stderr that is no
    # terminal, which every test run's is.
    os.environ.setdefault("TQDM_DISABLE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in THIRD_PARTY:
            try:
                importlib.import_module(name)
            except ImportError:  # not installed (e.g. Dassl): a run importing it fails as a fresh one would
                pass
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(1.0)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print("ready", flush=True)
    # Every handler is waited for (not left to the kernel), so that the runs' CPU time is counted in
    # the server's children's and, once the tests wait for the server, in the tests' own.
    while not stopping and os.getppid() == parent:  # the tests' process is gone: so is the server
        _reap(block=False)
        try:
            conn, _ = listener.accept()
        except (socket.timeout, InterruptedError):
            continue
        if os.fork() == 0:
            listener.close()
            _handle(conn)
            os._exit(0)
        conn.close()
    _reap(block=True)


def _reap(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _handle(conn: socket.socket) -> None:
    """Fork the run, tell the client its pid, wait for it, tell its exit code (as Popen's)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the run's, as a fresh interpreter's
    message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
    while not message.endswith(b"\n"):
        message += conn.recv(1 << 16)
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())


def _run(request: dict, fds: List[int]) -> None:
    """Become ``python ARGV`` in the request's working directory and environment; never returns."""
    import io
    import random
    import runpy
    import traceback

    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (fds[0], 1), (fds[1], 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has it
    unbuffered = os.environ.get("PYTHONUNBUFFERED", "") != ""
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=unbuffered,
                                                   encoding="utf-8")
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True,
                                                   encoding="utf-8", errors="backslashreplace")
    script = request["argv"][0]
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    random.seed()  # a fresh interpreter's random states, not the server's
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # an interpreter's exit on an uncaught Ctrl-C
    except BaseException:  # noqa: B036  an interpreter prints any uncaught exception and exits with 1
        sys.excepthook(*sys.exc_info())
        code = 1
    _finish()
    os._exit(code)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish() -> None:
    import atexit

    threading._shutdown()  # non-daemon threads are joined, then atexit runs, as at an interpreter's exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    serve(sys.argv[1])
