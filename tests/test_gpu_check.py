"""benchmarks/gpu_check.py: without CUDA it says so and checks nothing; forced onto the CPU (tiny
shapes) every branch runs, including the killed and resumed search and the 2-process run (gloo),
and its table reports them."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_says_so_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no CUDA device: nothing was checked")
    assert len(out.splitlines()) == 1  # that line alone: no table


def test_forced_on_the_cpu_every_check_runs_and_passes(capsys):
    code = gpu_check.main(["--device", "cpu", "--force", "--shape", "tiny", "--classes", "5", "--repeats", "1",
                           "--resume-epochs", "3"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.split() and line.split()[0] in ("search", "train", "evaluation",
                                                                                   "kill", "2")]
    assert code == 0, "\n".join(lines)
    checked = {(" ".join(r[:2]) if r[0] in ("search", "train", "kill", "2") else r[0]) for r in rows}
    assert checked == {"search step", "train step", "evaluation", "kill +", "2 processes"}
    assert len(rows) == 3 * 3 + 2  # three steps in three precisions, resume, two processes
    assert all("pass" in r for r in rows)
    resume = next(line for line in lines if line.startswith("kill + resume"))
    assert "bit-identical" in resume  # on the CPU, resumed after SIGKILL = uninterrupted
    fp16 = [r for r in rows if r[0] == "search" and r[2] == "fp16"][0]
    assert 0 < float(fp16[4]) <= gpu_check.TOLERANCES["fp16"]  # half precision measured, not skipped


def test_relative_difference_flags_non_finite_outputs():
    reference = {"x": torch.ones(3)}
    assert gpu_check.relative_difference({"x": torch.tensor([1.0, 1.0, 1.1])}, reference) == pytest.approx(0.1 / 3 ** 0.5)
    assert gpu_check.relative_difference({"x": torch.tensor([1.0, float("nan"), 1.0])}, reference) == float("inf")
