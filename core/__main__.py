"""Entry point for `python -m core` (the command line, and each torchrun worker).

Such a process lives for one command, and Python's cyclic garbage collector costs it time twice for nothing
(bench/README.md, "Without torch's compiler, and without the collector's walks"): the collections that run while
torch is imported walk the objects the import creates and free nothing (0.18 s of a 1.1 s import), and the
collection at exit walks them all again just before the process ends (0.25 s). So the commands that need torch
import it first (once their arguments parse: a mistyped option is answered at once), with collections paused, and
keep what it made out of later collections (gc.freeze); at exit everything is kept out. While the command runs,
garbage is collected as ever.
"""

import gc
import sys

TORCH_COMMANDS = frozenset({"train", "predict"})


def import_torch_uncollected() -> None:
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def parses(argv: list[str]) -> bool:
    """Whether the command line passes the grammar: one that does not is answered without torch (0.1 s, not 1.5)."""
    from core.cli import UsageError, build_parser

    try:
        build_parser().parse_args(argv)
    except UsageError:
        return False
    return True


if sys.argv[1:2] and sys.argv[1] in TORCH_COMMANDS and parses(sys.argv[1:]):
    import_torch_uncollected()

from core.cli import main  # noqa: E402

code = main()
gc.freeze()
sys.exit(code)
