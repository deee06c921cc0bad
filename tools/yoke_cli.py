"""yoke_cli -- the command-line conventions of yoke's Python tools.

Every program in tools/ takes --help, --version and --threads N, and
reports usage errors on stderr with exit status 2 (argparse does that):

    import yoke_cli
    args = yoke_cli.parser(__doc__).parse_args()
    yoke_cli.set_torch_threads(args.threads)
"""
import argparse
import os
import re

_HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "lib", "yoke.h")


def version():
    """YOKE_VERSION_STRING of lib/yoke.h (one version for C and Python)."""
    with open(_HEADER, encoding="utf-8") as f:
        m = re.search(r'#define YOKE_VERSION_STRING "([^"]+)"', f.read())
    return m.group(1) if m else "unknown"


def _threads(text):
    n = int(text) if text.isdigit() else 0
    if not 1 <= n <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not a thread count "
                                         "in 1..1024")
    return n


def parser(doc, **kwargs):
    """An ArgumentParser whose help is the module docstring, with
    --version and --threads N (default None: the library's default)."""
    prog = kwargs.pop("prog", None)
    ap = argparse.ArgumentParser(
        prog=prog, description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    ap.add_argument("--version", action="version",
                    version=f"%(prog)s (yoke) {version()}")
    ap.add_argument("--threads", type=_threads, metavar="N",
                    help="threads for PyTorch (torch.set_num_threads)")
    return ap


def set_torch_threads(n):
    """torch.set_num_threads(n) when n is given."""
    if n is not None:
        import torch
        torch.set_num_threads(n)
