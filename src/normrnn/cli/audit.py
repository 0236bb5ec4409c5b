"""``normrnn audit``: every normalization layer of your own model, explained and checked."""

from __future__ import annotations

import argparse

from .registry import subcommand

_AUDIT_EXAMPLES = (  # commands to copy, at the end of --help
    "normrnn audit examples.audit_convrnn:build --input-shape 4,10,1,64,64 --layout BTCHW",
    "normrnn audit mypkg.models:build --input-shape 8,20,32 --layout BTF --eval",
)


@subcommand("audit", order=5, examples=_AUDIT_EXAMPLES)
def _add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="explain and check every normalization layer of your own model "
                                     "(exit code 1 when there are findings)")
    p.add_argument("factory", help="MODULE:FACTORY, a function returning the model (the module is imported from "
                                   "the current directory or the Python path)")
    p.add_argument("--input-shape", action="append", required=True,
                   help="an example input's shape, e.g. 4,10,1,64,64 (repeat for more inputs)")
    p.add_argument("--layout", default="BTCHW", help="the letters of the first input (default: %(default)s)")
    p.add_argument("--eval", action="store_true", help="audit the model in eval mode (default: training mode)")
    p.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    """Exit 0: no findings; 1: findings; 2: could not audit (a one-line error, as every CLI error)."""
    import torch

    from .._checks import first_line
    from .._loader import FactoryExit, check_text, no_exit, resolve
    from ..auditing import audit, parse_shapes

    check_text("the factory", args.factory)
    factory = resolve(args.factory, "could not audit: factory")
    shapes = parse_shapes(args.input_shape)  # a ValueError for bad or huge shapes, before any model is built
    try:
        with no_exit(f"could not audit: factory {args.factory}"):
            model = factory()
    except FactoryExit:
        raise
    except Exception as e:
        raise ValueError(f"could not audit: {args.factory}() raised {type(e).__name__}: {first_line(e)} "
                         "(the factory is called with no arguments)") from None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"could not audit: expected {args.factory}() to return a torch.nn.Module, "
                         f"got {type(model).__name__}")
    model.train(not args.eval)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shape, generator=generator) for shape in shapes]
    try:
        with no_exit(f"could not audit: factory {args.factory}'s model"):
            report = audit(model, *inputs, layout=args.layout)
    except FactoryExit:
        raise
    except Exception as e:  # the model cannot be copied or hooked: whatever it is, the audit did not happen
        raise ValueError(f"could not audit {args.factory}: {type(e).__name__}: {first_line(e)}") from None
    if report.error:
        hint = "" if report.fixed_by else " (pass one --input-shape per forward argument)"
        raise ValueError(f"could not audit {args.factory}: the forward pass failed: {report.error}{hint}")
    print(report)
    return 1 if report.findings else 0
