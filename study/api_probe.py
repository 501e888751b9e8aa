"""One real request to an MLflow tracking server's REST API, with the Host header a client sends: `/health` is exempt
from MLflow's Host-header check, so a server that answers it can still refuse every write (403)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

# A read every client makes first (the experiment look-up); any JSON answer, even an error code, is the API talking.
API_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
HOST_REFUSED = "Invalid Host header"  # the body of MLflow's 403 (mlflow.server.security_utils.INVALID_HOST_MSG)


@dataclass(frozen=True)
class Probe:
    """What one API request found: `ok` when the tracking API answered; otherwise `host_refused` (MLflow's
    DNS-rebinding guard said 403 to this Host header), `unreachable` (nothing answered), or another answer."""

    ok: bool
    host: str
    reason: str = ""
    host_refused: bool = False
    unreachable: bool = False


def host_header(uri: str) -> str:
    """The Host header a client of `uri` sends (host, and port when the URI names one)."""
    return urlsplit(uri).netloc.rsplit("@", 1)[-1]


def probe(uri: str, host: str | None = None, timeout: float = 5.0) -> Probe:
    """Ask the tracking API at `uri` for one experiment, sending `host` as the Host header (default: the URI's own)."""
    host = host or host_header(uri)
    request = urllib.request.Request(uri.rstrip("/") + API_PATH, headers={"Host": host, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        text = body.decode("utf-8", "replace").strip()
        if exc.code == 403 and HOST_REFUSED in text:
            return Probe(False, host, f"403 {HOST_REFUSED}", host_refused=True)
        if _is_json(body):  # an MLflow error answer (e.g. a bad parameter): the API itself is up
            return Probe(True, host)
        return Probe(False, host, f"HTTP {exc.code} on {API_PATH.split('?')[0]}: {text.splitlines()[0][:120] if text else exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        return Probe(False, host, str(getattr(exc, "reason", exc)), unreachable=True)
    if not _is_json(body):
        return Probe(False, host, f"{API_PATH.split('?')[0]} did not answer JSON (is this an MLflow tracking server?)")
    return Probe(True, host)


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True
