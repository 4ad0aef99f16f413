"""`introspect explore`: one static web site from run folders of one model, optionally served locally."""
from __future__ import annotations

import argparse
from pathlib import Path

from introspect.site import build_site

from ..output import Outcome, Output

DEFAULT_PORT = 8000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="a static web site (model, layer, channel, class and image pages) from run folders",
                       description="Join run folders of one model (channels, classes, activations) into one static "
                                   "site that opens from file://; what the runs lack (activation maps, histograms, "
                                   "attributions, confusions) is computed from the recorded model and dataset, cached.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by channels, classes or activations")
    p.add_argument("--out", metavar="SITE", default="site", help="folder the site is written to (default: site)")
    p.add_argument("--serve", nargs="?", type=int, const=DEFAULT_PORT, metavar="PORT",
                   help=f"serve the site on http://127.0.0.1:PORT until interrupted; PORT defaults to {DEFAULT_PORT} "
                        "(default: do not serve)")
    p.add_argument("--trust", action="store_true",
                   help="load a recorded model that loads code (a .py file, a package class, a TorchScript archive, "
                        "an unpickled checkpoint) to compute what the runs lack (default: such models are not loaded)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, io: Output) -> Outcome:
    out = build_site(args.runs, Path(args.out), trust=args.trust)
    index = out.resolve() / "index.html"
    io.out.print(f"wrote {index}", markup=False)
    if args.serve is not None:
        serve(out, args.serve, io)
    return Outcome(0, {"site": str(index)})


def serve(folder: Path, port: int, io: Output) -> None:
    """Serve ``folder`` on 127.0.0.1 only, until Ctrl-C."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        io.out.print(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", markup=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
