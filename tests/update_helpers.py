"""What the update tests share: bundles made from the tiny one, and a bundle server that can misbehave.

Not a test module (no ``test_`` prefix): imported by tests/test_update_*.py.

:class:`ArchiveServer` is a real HTTP server (``http.server`` on a free port, its own thread) serving
``/api/bundles/<id>/bundle.tar`` from files, with HTTP ``Range`` as serve answers it, and faults on
demand: cut the connection after N bytes (``cut_after``), send slowly (``bytes_per_s``), or answer with
other bytes than the archive (``corrupt``).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from edge_har.core.bundle_archive import pack_bundle
from edge_har.core.signing import sign_bundle


def derived_bundle(
    src: Path, dest: Path, change: Optional[Callable[[dict[str, Any]], None]] = None, key: Optional[Path] = None
) -> Path:
    """A copy of ``src`` whose bundle.json ``change`` edits (a new model_id, labels...), signed with ``key``."""
    shutil.copytree(src, dest)
    (dest / "bundle.sig").unlink(missing_ok=True)
    if change is not None:
        data = json.loads((dest / "bundle.json").read_text())
        change(data)
        (dest / "bundle.json").write_text(json.dumps(data, indent=2))
    if key is not None:
        sign_bundle(dest, key)
    return dest


def archive_of(bundle: Path, out: Path) -> dict[str, Any]:
    """Pack ``bundle`` and return the update command that names it (bundle_id from its sha256)."""
    pack_bundle(bundle, out)
    data = out.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    model_id = json.loads((bundle / "bundle.json").read_text())["model_id"]
    return {"bundle_id": f"{model_id}-{sha[:12]}", "sha256": sha, "size_bytes": len(data), "path": out}


class ArchiveServer:
    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.cut_after: Optional[int] = None  # the next response stops after this many bytes (once)
        self.bytes_per_s: Optional[float] = None
        self.corrupt = False
        self.requests: list[dict[str, Any]] = []
        self.password: Optional[str] = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(
                    {"path": self.path, "range": self.headers.get("Range"), "auth": self.headers.get("Authorization")}
                )
                if server.password is not None:
                    import base64

                    want = "Basic " + base64.b64encode(f"edge-har:{server.password}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self.send_error(401)
                        return
                parts = self.path.split("/")
                if (
                    len(parts) != 5
                    or parts[:3] != ["", "api", "bundles"]
                    or parts[4] != "bundle.tar"
                    or parts[3] not in server.files
                ):
                    self.send_error(404)
                    return
                data = server.files[parts[3]].read_bytes()
                if server.corrupt:
                    data = bytes(b ^ 0x55 for b in data)
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut, server.cut_after = server.cut_after, None
                if cut is not None:
                    body = body[:cut]
                try:
                    for i in range(0, len(body), 4096):
                        self.wfile.write(body[i : i + 4096])
                        self.wfile.flush()
                        if server.bytes_per_s:
                            time.sleep(4096 / server.bytes_per_s)
                except (BrokenPipeError, ConnectionResetError):  # the device was killed mid-download
                    self.close_connection = True
                    return
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, command: dict[str, Any]) -> None:
        self.files[command["bundle_id"]] = command["path"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
