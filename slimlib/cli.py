"""Command line: ``slimlib`` (or ``python -m slimlib``) ``{collect,solve,figures,models,methods}``.

Chapter *Using slimlib in your own analysis*, section "The command line".
Every user error — a bad argument, a malformed or missing file, a folder where
a file is expected, an unwritable ``--out``, an existing output file without
``--force``, a model folder or hub name that cannot be opened — ends with one
line naming the argument and the value and exit status 2, never a traceback.
Input paths and ``--out`` are checked before any long work starts.  A closed
pipe (``slimlib models | head``) ends the program quietly.

Adding a subcommand
-------------------
Write a module with ``add_parser(sub)`` (``sub`` is the object returned by
``argparse.ArgumentParser.add_subparsers``; return the new parser) and
``run(args) -> int``, and append its import name to :data:`COMMAND_MODULES`.
The module is imported when the parser is built, so keep heavy imports inside
``run``.  ``run`` raises ValueError (or OSError) for user errors; this module
turns them into one line and exit status 2.  Helpers for checks before work:
:func:`check_input_file`, :func:`check_output_file`, :func:`check_output_dir`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "COMMAND_MODULES", "check_input_file", "check_output_file", "check_output_dir"]

#: Modules that define subcommands (``add_parser(sub)`` and ``run(args)``), in the order of ``--help``.
COMMAND_MODULES: list[str] = [__name__ + ":Collect", __name__ + ":Solve", __name__ + ":Figures",
                              __name__ + ":Models", __name__ + ":Methods",
                              "slimlib.simulation.cli", "slimlib.online_cli"]

#: Default HiGHS time limit of ``solve --method exact`` on the command line, seconds.
EXACT_TIME_LIMIT_S = 60.0

#: ``placement.info`` keys printed after a solve when present (solver status, gap, bounds).
INFO_KEYS = ("status", "optimal", "time_limit_reached", "mip_gap", "gap", "highs_gap", "objective_s",
             "bound_s", "upper_bound", "lower_bound", "certified_gap", "repaired", "stages_exact")


class UserError(ValueError):
    """An error in what the user asked for (one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line (with a pointer to ``--help``) instead of usage plus error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- checks before work ----------------------------------------------------------------------
def check_input_file(option: str, path: str) -> Path:
    """An existing, readable file (not a folder)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{option}: no such file (got {path!r})")
    if p.is_dir():
        raise UserError(f"{option}: is a folder, not a file (got {path!r})")
    if not p.is_file():
        raise UserError(f"{option}: is not a regular file (got {path!r})")
    if not os.access(p, os.R_OK):
        raise UserError(f"{option}: file is not readable (got {path!r})")
    return p


def check_output_file(option: str, path: str, force: bool) -> Path:
    """A file that :func:`slimlib.save` can write: folder writable, not existing unless ``force``."""
    from .io import check_writable
    try:
        return check_writable(path, overwrite=force, field=option)
    except ValueError as exc:
        raise UserError(str(exc).replace("overwrite=True (CLI: --force)", "--force")) from None


def check_output_dir(option: str, path: str) -> Path:
    """A folder that exists or can be created, and is writable (nothing is created yet)."""
    from .io import check_folder_writable
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{option}: exists and is not a folder (got {path!r})")
    return check_folder_writable(p, field=option)


# -- collect ---------------------------------------------------------------------------------
class Collect:
    """``collect``: record Top-K routing of a transformers MoE model into a statistics file."""

    @staticmethod
    def add_parser(sub):
        c = sub.add_parser("collect", help="record Top-K routing of a transformers MoE model into a statistics file")
        c.add_argument("--model", required=True, help="local folder or hub name of a transformers MoE model")
        c.add_argument("--prompts", required=True, help=".txt (one prompt per line) or .jsonl file")
        c.add_argument("--out", required=True, help="output statistics JSON")
        c.add_argument("--force", action="store_true", help="replace --out if it exists")
        c.add_argument("--field", default="text", help="field of each JSONL record holding the prompt (default: text)")
        c.add_argument("--max-tokens", type=int, default=None, help="stop after this many (non-pad) tokens")
        c.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default: 8)")
        c.add_argument("--max-length", type=int, default=512, help="truncate prompts to this many tokens (default: 512)")
        c.add_argument("--name", default=None, help="model name stored in the statistics, e.g. a model card name "
                       "(default: the folder's or hub name's last part)")
        c.add_argument("--tokenizer", default=None, help="tokenizer folder or hub name, or 'bytes' for byte-level ids "
                       "(default: the model's own)")
        return c

    @staticmethod
    def run(args) -> int:
        _check_model_source("--model", args.model, need_config=True)
        if args.tokenizer not in (None, "bytes"):
            _check_model_source("--tokenizer", args.tokenizer, need_config=False)
        check_input_file("--prompts", args.prompts)
        check_output_file("--out", args.out, args.force)
        try:
            from .activations import main_collect
        except ImportError as exc:
            raise UserError(f"collect: needs torch and transformers: pip install \"slimlib[collect]\" ({exc})") from None
        try:
            return main_collect(args)
        except OSError as exc:      # hub client, unreadable model folder, offline hub name
            raise UserError(f"--model: cannot open {args.model!r}: {_oserror_text(exc)}") from None


def _check_model_source(option: str, value: str, *, need_config: bool) -> None:
    # A local folder must exist and (for a model) hold config.json; anything else is a hub name
    # ("org/name"), which only the hub client can check (its OSError is caught around collect).
    p = Path(value).expanduser()
    looks_local = p.exists() or value.startswith((".", "/", "~")) or value.count("/") > 1 or os.sep != "/" and os.sep in value
    if not looks_local:
        return
    if not p.exists():
        raise UserError(f"{option}: no such folder (got {value!r})")
    if not p.is_dir():
        raise UserError(f"{option}: not a folder (got {value!r})")
    if need_config and not (p / "config.json").is_file():
        raise UserError(f"{option}: folder has no config.json, so it is not a transformers model (got {value!r})")


# -- solve -----------------------------------------------------------------------------------
class Solve:
    """``solve``: solve a problem file and write the placement."""

    @staticmethod
    def add_parser(sub):
        s = sub.add_parser("solve", help="solve a problem file and write the placement")
        s.add_argument("problem", help="problem JSON (kind: problem)")
        s.add_argument("--method", default="decomposition", help="solver name (see `methods`)")
        s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="solver option, e.g. --option eps=0.05 (repeatable; values parsed as JSON when "
                            f"possible). exact gets time_limit={EXACT_TIME_LIMIT_S:g} unless given")
        s.add_argument("--out", help="write the placement JSON here")
        s.add_argument("--force", action="store_true", help="replace --out if it exists")
        return s

    @staticmethod
    def run(args) -> int:
        import slimlib
        from . import _validate as V
        from .solvers import _METHODS, _load_all
        check_input_file("problem", args.problem)
        if args.out:
            check_output_file("--out", args.out, args.force)
        options = dict(_parse_option(o) for o in args.option)
        _load_all()
        if args.method not in _METHODS:
            raise V.fail("method", args.method, f"unknown method; known: {sorted(_METHODS)}")
        if args.method == "exact":
            options.setdefault("time_limit", EXACT_TIME_LIMIT_S)
        options = V.options(args.method, _METHODS[args.method], options)
        problem = slimlib.load(args.problem)
        if not isinstance(problem, slimlib.Problem):
            raise V.fail("problem", args.problem, f"file holds a {type(problem).__name__}, not a problem")
        extra = f", time limit {options['time_limit']:g} s" if options.get("time_limit") is not None else ""
        print(f"solving {problem.num_users} users x {problem.num_servers} servers with {args.method}{extra} ...",
              file=sys.stderr, flush=True)
        placement = slimlib.solve(problem, method=args.method, **options)
        base = slimlib.average_latency(problem, slimlib.Placement.empty(problem))
        lat = slimlib.average_latency(problem, placement)
        print(f"method            {args.method}")
        print(f"average latency   {lat * 1e3:.4f} ms per token (no edge caching: {base * 1e3:.4f} ms)")
        print(f"run time          {placement.info.get('runtime_s', float('nan')):.3f} s")
        for key in INFO_KEYS:
            if key in placement.info:
                print(f"{key:<17s} {_fmt_info(placement.info[key])}")
        used = placement.used_bytes(problem)
        for n, (u, q) in enumerate(zip(used, problem.network.server_capacity_bytes)):
            print(f"server {n:<3d}        {u / 1e9:.3f} / {q / 1e9:.3f} GB, {len(placement.cached(n))} experts")
        if args.out:
            slimlib.save(placement, args.out, overwrite=args.force)
            print(f"placement written to {args.out}")
        return 0


def _fmt_info(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _parse_option(text: str):
    if "=" not in text:
        raise UserError(f"--option: expected KEY=VALUE (got {text!r})")
    k, v = text.split("=", 1)
    if not k.isidentifier():
        raise UserError(f"--option: {k!r} is not an option name (got {text!r})")
    try:
        return k, json.loads(v)
    except (json.JSONDecodeError, RecursionError, ValueError):
        return k, v


# -- figures, models, methods -----------------------------------------------------------------
class Figures:
    """``figures``: regenerate the book's figures (parser and runner in :mod:`slimlib.experiments.cli`)."""

    @staticmethod
    def add_parser(sub):
        from .experiments.cli import add_parser
        return add_parser(sub)

    @staticmethod
    def run(args) -> int:
        check_output_dir("--out", args.out)
        from .experiments.cli import run
        return run(args)


def _run_models(args) -> int:
    import slimlib
    for name in slimlib.model_card_names():
        m = slimlib.load_model_card(name)
        print(f"{name:28s} L={m.num_layers:<3d} E={m.num_experts:<4d} K={m.top_k} "
              f"expert={m.expert_bytes / 1e6:.1f} MB ({m.bytes_per_param:g} B/param)")
    return 0


def _run_methods(args) -> int:
    import slimlib
    print("\n".join(slimlib.methods()))
    return 0


class Command:
    """A subcommand without options: ``Command(name, help, run)`` has ``add_parser`` and ``run``."""

    def __init__(self, name: str, help: str, run):
        self.name, self.help, self.run = name, help, run

    def add_parser(self, sub):
        return sub.add_parser(self.name, help=self.help)


Models = Command("models", "list the model cards (data/models and $SLIMLIB_DATA folders)", _run_models)
Methods = Command("methods", "list the solver names", _run_methods)


# -- entry point -----------------------------------------------------------------------------
def _command(spec: str):
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    from . import __version__
    p = _Parser(prog=prog,
                                description="Expert caching for distributed MoE inference (the SlimCaching book).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in COMMAND_MODULES:
        cmd = _command(spec)
        cmd.add_parser(sub).set_defaults(_run=cmd.run)
    return p


def _oserror_text(exc: OSError) -> str:
    parts = [exc.strerror or str(exc) or type(exc).__name__]
    if exc.filename:
        parts.append(str(exc.filename))
    return ": ".join(parts).replace("\n", " ")


def main(argv=None, prog: str | None = None) -> int:
    """Entry point of the ``slimlib`` script and of ``python -m slimlib``.

    ``prog`` names the program in usage lines (default: the script's name,
    ``sys.argv[0]``).  Returns the exit status; user errors exit with 2.
    """
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        return args._run(args)
    except BrokenPipeError:
        # The reader closed the pipe (`slimlib models | head`): stop quietly; route further output
        # to devnull so that the interpreter's final flush does not complain either.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):   # no real stdout (e.g. captured in a test)
            pass
        return 0
    except KeyboardInterrupt:
        parser.exit(130, f"{parser.prog} {args.command}: interrupted\n")
    except ValueError as exc:
        msg = " ".join(str(exc).split("\n"))
        parser.exit(2, f"{parser.prog} {args.command}: error: {msg}\n")
    except OSError as exc:
        parser.exit(2, f"{parser.prog} {args.command}: error: {_oserror_text(exc)}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(prog="python -m slimlib"))
