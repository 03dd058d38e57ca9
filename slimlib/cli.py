"""Command line: ``python -m slimlib {collect,solve,figures,models,methods}``.

Chapter *Using slimlib in your own analysis*, section "The command line".
Bad arguments end with one clear message naming the argument and the value
(exit status 2), never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m slimlib",
                                description="Expert caching for distributed MoE inference (the SlimCaching book).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("collect", help="record Top-K routing of a transformers MoE model into a statistics file")
    c.add_argument("--model", required=True, help="local folder or hub name of a transformers MoE model")
    c.add_argument("--prompts", required=True, help=".txt (one prompt per line) or .jsonl file")
    c.add_argument("--out", required=True, help="output statistics JSON")
    c.add_argument("--field", default="text", help="field of each JSONL record holding the prompt (default: text)")
    c.add_argument("--max-tokens", type=int, default=None, help="stop after this many (non-pad) tokens")
    c.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default: 8)")
    c.add_argument("--max-length", type=int, default=512, help="truncate prompts to this many tokens (default: 512)")
    c.add_argument("--name", default=None, help="model name stored in the statistics, e.g. a model card name "
                   "(default: the folder's or hub name's last part)")
    c.add_argument("--tokenizer", default=None, help="tokenizer folder or hub name, or 'bytes' for byte-level ids "
                   "(default: the model's own)")

    s = sub.add_parser("solve", help="solve a problem file and write the placement")
    s.add_argument("problem", help="problem JSON (kind: problem)")
    s.add_argument("--method", default="decomposition", help="solver name (see `methods`)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="solver option, e.g. --option eps=0.05 (repeatable; values parsed as JSON when possible)")
    s.add_argument("--out", help="write the placement JSON here")

    from .experiments.cli import add_parser as add_figures_parser
    add_figures_parser(sub)

    sub.add_parser("models", help="list the model cards shipped in data/models")
    sub.add_parser("methods", help="list the solver names")
    return p


def _parse_option(text: str):
    if "=" not in text:
        raise ValueError(f"--option: expected KEY=VALUE (got {text!r})")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def _solve(args) -> int:
    import slimlib
    problem = slimlib.load(args.problem)
    if not isinstance(problem, slimlib.Problem):
        raise ValueError(f"problem: file {args.problem!r} holds a {type(problem).__name__}, not a problem")
    options = dict(_parse_option(o) for o in args.option)
    placement = slimlib.solve(problem, method=args.method, **options)
    base = slimlib.average_latency(problem, slimlib.Placement.empty(problem))
    lat = slimlib.average_latency(problem, placement)
    print(f"method            {args.method}")
    print(f"average latency   {lat * 1e3:.4f} ms per token (no edge caching: {base * 1e3:.4f} ms)")
    print(f"run time          {placement.info.get('runtime_s', float('nan')):.3f} s")
    used = placement.used_bytes(problem)
    for n, (u, q) in enumerate(zip(used, problem.network.server_capacity_bytes)):
        print(f"server {n:<3d}        {u / 1e9:.3f} / {q / 1e9:.3f} GB, {len(placement.cached(n))} experts")
    if args.out:
        slimlib.save(placement, args.out)
        print(f"placement written to {args.out}")
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m slimlib`` and the ``slimlib`` script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            from .activations import main_collect
            return main_collect(args)
        if args.command == "solve":
            return _solve(args)
        if args.command == "figures":
            from .experiments.cli import run as main_figures
            return main_figures(args)
        if args.command == "models":
            import slimlib
            for name in slimlib.model_card_names():
                m = slimlib.load_model_card(name)
                print(f"{name:28s} L={m.num_layers:<3d} E={m.num_experts:<4d} K={m.top_k} "
                      f"expert={m.expert_bytes / 1e6:.1f} MB ({m.bytes_per_param:g} B/param)")
            return 0
        if args.command == "methods":
            import slimlib
            print("\n".join(slimlib.methods()))
            return 0
    except ValueError as exc:
        parser.exit(2, f"{parser.prog} {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
