"""The command line: `python -m slimlib solve|models|methods` end to end."""
from __future__ import annotations

import subprocess
import sys

import pytest

import slimlib as sl
from slimlib.cli import main
from slimlib.instances import random_problem


def test_solve_writes_a_feasible_placement_with_the_evaluator_latency(tmp_path, capsys):
    problem = random_problem(3, num_users=2, num_servers=2, num_experts=3)
    path = sl.save(problem, tmp_path / "problem.json")
    assert main(["solve", str(path), "--method", "none", "--out", str(tmp_path / "x.json")]) == 0
    out = capsys.readouterr().out
    placement = sl.load(tmp_path / "x.json")
    assert placement.is_feasible(problem) and placement.method == "none"
    want = sl.average_latency(problem, placement) * 1e3
    assert f"average latency   {want:.4f} ms" in out


def test_solve_rejects_unknown_method_and_bad_option(tmp_path, capsys):
    path = sl.save(random_problem(0), tmp_path / "p.json")
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(path), "--method", "magic"])
    assert exc.value.code == 2
    assert "method: unknown method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["solve", str(path), "--method", "none", "--option", "eps"])
    assert "--option: expected KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["solve", str(path), "--method", "none", "--option", "eps=0.1"])
    assert "options" in capsys.readouterr().err


def test_solve_refuses_a_file_of_another_kind(tmp_path, capsys):
    path = sl.save(sl.load_model_card("switch-base-8"), tmp_path / "card.json")
    with pytest.raises(SystemExit):
        main(["solve", str(path)])
    assert "holds a MoEModel, not a problem" in capsys.readouterr().err


def test_models_lists_every_card_as_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "slimlib", "models"], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == len(sl.model_card_names())
    assert any(line.startswith("switch-base-8 ") and "expert=18.9 MB (4 B/param)" in line for line in lines)
