"""`introspect explore`: one static web site from run folders of one model, optionally served locally.

``--serve`` answers only on 127.0.0.1, only requests whose Host is 127.0.0.1 or localhost (a page on another
site cannot reach it through DNS rebinding: 421), and only with regular files inside the site folder (no
directory listings, no ``..`` or other dot names, no symbolic links: 404).
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from introspect.errors import UserError
from introspect.site import build_site

from ..options import FLAGS, add_device, resolve_device
from ..output import Outcome, Output

DEFAULT_PORT = 8000
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0 to 65535; 0: any free port)")
    return port


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="a static web site (model, layer, channel, class and image pages) from run folders",
                       description="Join run folders of one model (channels, classes, activations) into one static "
                                   "site that opens from file://; what the runs lack (activation maps, histograms, "
                                   "attributions, confusions) is computed from the recorded model and dataset, cached.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by channels, classes or activations")
    p.add_argument("--out", metavar="SITE", default="site",
                   help="folder the site is written to: a new or empty folder, or a site explore wrote (only its "
                        "files are replaced) (default: site)")
    p.add_argument("--serve", nargs="?", type=port_number, const=DEFAULT_PORT, metavar="PORT",
                   help=f"serve the site on http://127.0.0.1:PORT until interrupted; PORT defaults to {DEFAULT_PORT}, "
                        "0 takes a free one (the 'serving' line on stderr and --json say which) (default: do not serve)")
    p.add_argument("--trust", action="store_true",
                   help="load a recorded model that loads code (a .py file, a package class, a TorchScript archive, "
                        "an unpickled checkpoint) to compute what the runs lack (default: such models are not loaded)")
    add_device(p, "where what the runs lack is computed")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, io: Output) -> Outcome:
    device = resolve_device(args.device)
    server = None if args.serve is None else open_server(args.serve)  # a port in use is said before any work
    try:
        out = build_site(args.runs, Path(args.out), trust=args.trust, names=FLAGS, device=device,
                         on_progress=lambda line: io.err.print(f"explore: {line}", markup=False))
        index = out.resolve() / "index.html"
        io.out.print(f"wrote {index}", markup=False)
        summary = {"site": str(index)}
        if server is not None:
            server.root = out.resolve()
            port = server.server_address[1]
            summary.update(url=f"http://127.0.0.1:{port}/", port=port)
            # always said (also under --quiet): without it a free port (--serve 0) cannot be found
            print(f"serving http://127.0.0.1:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
    finally:
        if server is not None:
            server.server_close()
    return Outcome(0, summary)


class SiteServer(ThreadingHTTPServer):
    root: Path
    daemon_threads = True


def open_server(port: int) -> SiteServer:
    """A server bound to 127.0.0.1:``port`` (serving starts later); a UserError when the port cannot be had."""
    try:
        return SiteServer(("127.0.0.1", port), SiteHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError("port {port} is in use; choose another with --serve PORT (0: any free port)",
                            port=port) from None
        raise UserError("cannot serve on port {port} ({reason}); choose another with --serve PORT",
                        port=port, reason=exc.strerror or exc) from None


class SiteHandler(SimpleHTTPRequestHandler):
    """GET and HEAD of regular files under the server's root, for local hosts only."""

    server: SiteServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # stderr stays for the serving line and errors

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def local_host(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not name:  # no port given
            name, port = host, ""
        return name in LOCAL_HOSTS and (port == "" or port == str(self.server.server_address[1]))

    def send_head(self):
        if not self.local_host():
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "this server answers only to 127.0.0.1 and localhost")
            return None
        path = self.site_file(self.path)
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        try:
            handle = open(path, "rb")  # noqa: SIM115 - copyfile reads and closes it, as in the base class
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        stat = os.fstat(handle.fileno())
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(stat.st_size))
        self.end_headers()
        return handle

    def site_file(self, request: str) -> Path | None:
        """The regular file under the root that ``request`` names (a folder: its index.html), or None: no part
        starting with a dot (``..``, the marker), no symbolic link anywhere below the root, nothing outside it."""
        root = self.server.root
        text = unquote(urlsplit(request).path)
        parts = [p for p in text.split("/") if p]
        if any(p.startswith(".") or "\\" in p or "\0" in p for p in parts):  # "..", the marker, a build folder
            return None
        path = root
        for part in parts:
            path = path / part
            if path.is_symlink():
                return None
        if path.is_dir():
            path = path / "index.html"
            if path.is_symlink():
                return None
        try:
            real = path.resolve(strict=True)
        except OSError:
            return None
        if not real.is_file() or root not in (real, *real.parents):
            return None
        return real
