"""parse_results.py: mean and 95% interval over seeds from CoOp-style output folders (no Dassl needed)."""

import math
import os
import statistics
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import parse_results  # noqa: E402


def write_log(folder, *accuracies, name="log.txt"):
    os.makedirs(folder, exist_ok=True)
    lines = ["epoch [1/1] batch [1/1] loss 1.0 acc 50.0"]
    for i, acc in enumerate(accuracies):
        if i == len(accuracies) - 1:
            lines.append("Finish training")
        lines += ["=> result", "* total: 10", f"* accuracy: {acc}%", "* error: 1.0%"]
    with open(os.path.join(folder, name), "w") as f:
        f.write("\n".join(lines) + "\n")


def test_groups_by_setting_and_reports_mean_and_interval(tmp_path, capsys):
    root = tmp_path / "caltech101" / "DPL_MaPLe"
    values = {"seed1": 90.0, "seed2": 92.0, "seed3": 95.0}
    for seed, acc in values.items():
        write_log(str(root / "vit_b16_16shots" / seed), 10.0, acc)  # a best-val line first, the final last
    write_log(str(root / "vit_b16_1shots" / "seed1"), 70.0)
    os.makedirs(root / "vit_b16_1shots" / "seed2")  # still running: reported on stderr, not counted
    means = parse_results.summarise(str(root))
    out = capsys.readouterr()
    assert means == {"vit_b16_16shots": pytest.approx(92.333333), "vit_b16_1shots": 70.0}
    ci = 1.96 * statistics.pstdev(values.values()) / math.sqrt(3)  # CoOp's --ci95
    assert f"92.33  {ci:6.2f}" in out.out and "seed1=90.00 seed2=92.00 seed3=95.00" in out.out
    assert "no result yet" in out.err
    assert parse_results.interval([90.0, 92.0, 95.0], student_t=True) == pytest.approx(
        4.303 * statistics.stdev([90.0, 92.0, 95.0]) / math.sqrt(3))


def test_a_resumed_runs_newest_log_wins(tmp_path):
    run = tmp_path / "seed1"
    write_log(str(run), 50.0)
    time.sleep(0.01)
    write_log(str(run), 60.0, name="log.txt-2025-01-01-00-00-00")
    os.utime(run / "log.txt", (1, 1))
    assert parse_results.run_accuracy(str(run)) == 60.0


def test_base_to_new_harmonic_mean(tmp_path, capsys):
    for part, acc in (("train_base", 80.0), ("test_new", 60.0)):
        write_log(str(tmp_path / part / "dtd" / "shots_16" / "DPL_MaPLe" / "vit_b16" / "seed1"), acc)
    parse_results.main(["--base2new", str(tmp_path)])
    assert "dtd/shots_16/DPL_MaPLe/vit_b16: base 80.00  new 60.00  HM 68.57" in capsys.readouterr().out


def test_nothing_found_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no finished runs"):
        parse_results.summarise(str(tmp_path))


def test_a_single_seed_gets_no_interval(tmp_path, capsys):
    write_log(str(tmp_path / "one" / "seed1"), 70.0)
    for seed, acc in (("seed1", 80.0), ("seed2", 90.0)):
        write_log(str(tmp_path / "two" / seed), acc)
    parse_results.summarise(str(tmp_path))
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["one"][:4] == ["one", "1", "70.00", "-"] and "nan" not in " ".join(rows["one"])
    assert rows["two"][:4] == ["two", "2", "85.00", f"{1.96 * 5.0 / math.sqrt(2):.2f}"]
