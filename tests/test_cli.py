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


# -- issue 12 item 7 / issue 13 item 5: every user error is one line and exit status 2 ----------------
def run_cli(*args, env=None, stdin=None, stdout=subprocess.PIPE):
    import os
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "slimlib", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, env=full_env, timeout=300)


def one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_cli_errors_are_one_line_for_oserrors_too(tmp_path, capsys):
    problem = random_problem(3, num_users=2, num_servers=2, num_experts=3)
    path = sl.save(problem, tmp_path / "problem.json")
    (tmp_path / "a-file").write_text("x")
    existing = tmp_path / "existing.json"
    existing.write_text("keep me")
    cases = [
        (["solve", str(tmp_path)], "problem: is a folder, not a file"),
        (["solve", str(tmp_path / "absent.json")], "problem: no such file"),
        (["solve", str(path), "--out", str(tmp_path)], "--out: is a folder; give a file name"),
        (["solve", str(path), "--out", str(existing)], "--out: file exists; pass --force to replace it"),
        (["solve", str(path), "--out", str(tmp_path / "a-file" / "x.json")], "is not a folder"),
        (["solve", str(path), "--option", "fill=maybe"], "option fill: must be true or false (got 'maybe')"),
        (["solve", str(path), "--option", "max_units=1.5"], "option max_units: must be an integer (got 1.5)"),
        (["solve", str(path), "--option", "=3"], "--option: '' is not an option name"),
        (["figures", "--out", str(existing)], "--out: exists and is not a folder"),
        (["figures", "--out", str(tmp_path / "a-file" / "figs")], "is not a folder"),
        (["collect", "--model", str(tmp_path / "no-model"), "--prompts", str(existing), "--out",
          str(tmp_path / "s.json")], "--model: no such folder"),
        (["collect", "--model", str(tmp_path), "--prompts", str(existing), "--out", str(tmp_path / "s.json")],
         "--model: folder has no config.json"),
        (["collect", "--model", str(tmp_path), "--prompts", str(tmp_path / "none.txt"), "--out", "x.json"],
         "--model: folder has no config.json"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv, prog="slimlib")
        err = capsys.readouterr().err
        assert exc.value.code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and needle in err, (argv, err)
        assert err.startswith(f"slimlib {argv[0]}: error: ")
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "existing.json", "problem.json"]


def test_force_replaces_and_out_is_checked_before_the_solve(tmp_path, capsys):
    problem = random_problem(3, num_users=2, num_servers=2, num_experts=3)
    path = sl.save(problem, tmp_path / "problem.json")
    out = tmp_path / "x.json"
    out.write_text("old")
    assert main(["solve", str(path), "--method", "greedy", "--out", str(out), "--force"]) == 0
    assert sl.load(out).is_feasible(problem)
    capsys.readouterr()
    calls = []
    import slimlib.solvers as S
    orig = S.solve
    try:
        S.solve = lambda *a, **k: calls.append(1) or orig(*a, **k)
        with pytest.raises(SystemExit):
            main(["solve", str(path), "--out", str(out)])
    finally:
        S.solve = orig
    assert calls == [] and "file exists" in capsys.readouterr().err


def test_collect_broken_folder_and_offline_hub_name_are_one_line(tmp_path):
    # One subprocess (torch and transformers take seconds to import) runs both cases, offline.
    pytest.importorskip("transformers")
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    out = str(tmp_path / "s.json")
    code = ("import sys\nfrom slimlib.cli import main\n"
            f"for model in ({str(broken)!r}, 'nowhere/no-such-moe'):\n"
            "    try:\n"
            f"        main(['collect', '--model', model, '--prompts', {str(prompts)!r}, '--out', {out!r}], "
            "prog='slimlib')\n"
            "    except SystemExit as e:\n"
            "        print(e.code)\n")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.stdout.split() == ["2", "2"], res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"slimlib collect: error: --model: cannot open {str(broken)!r}")
    assert lines[1].startswith("slimlib collect: error: --model: cannot open 'nowhere/no-such-moe'")
    assert not (tmp_path / "s.json").exists()


def test_version_and_program_names():
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"python -m slimlib {sl.__version__}"
    assert run_cli("solve", "--help").stdout.startswith("usage: python -m slimlib solve")
    script = __import__("pathlib").Path(sys.executable).parent / "slimlib"
    if script.exists():
        out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
        assert out.startswith("usage: slimlib ")


def test_a_closed_pipe_ends_quietly():
    import os
    r, w = os.pipe()
    os.close(r)                      # the reader is gone before the first line is written
    try:
        res = subprocess.run([sys.executable, "-m", "slimlib", "models"], stdout=w, stderr=subprocess.PIPE,
                             text=True, timeout=120)
    finally:
        os.close(w)
    assert res.returncode == 0 and res.stderr == ""


def test_exact_prints_progress_status_and_gap(tmp_path, capsys):
    problem = random_problem(1, num_users=2, num_servers=2, num_experts=3)
    path = sl.save(problem, tmp_path / "problem.json")
    assert main(["solve", str(path), "--method", "exact"]) == 0
    cap = capsys.readouterr()
    assert "with exact, time limit 60 s ..." in cap.err
    assert "status            optimal" in cap.out and "gap               0" in cap.out
    assert main(["solve", str(path), "--method", "exact", "--option", "time_limit=5"]) == 0
    assert "time limit 5 s" in capsys.readouterr().err


def test_extra_subcommand_modules_plug_in(monkeypatch, capsys, tmp_path):
    import types
    from slimlib import cli
    mod = types.ModuleType("slimlib_test_plugin")
    mod.add_parser = lambda sub: sub.add_parser("hello", help="say hello")
    mod.run = lambda args: print("hello") or 0
    monkeypatch.setitem(sys.modules, "slimlib_test_plugin", mod)
    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ["slimlib_test_plugin"])
    assert main(["hello"]) == 0 and capsys.readouterr().out == "hello\n"
    assert main(["methods"]) == 0
