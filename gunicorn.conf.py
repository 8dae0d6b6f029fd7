"""gunicorn reads this file from the working directory: what the master sets up before the workers start.

The refusal to listen beyond loopback without API keys (it needs the bind addresses), the open-file limit the
connections need, and the directories the workers share (metrics, signature memory). It must not import the
gateway's modules that reach ssl, nor prometheus_client: the master would import ssl before the gevent workers
patch it (``gateway.config`` and ``gateway.security`` use the standard library only).
"""

from __future__ import annotations

import glob
import os
import resource
import shutil
import tempfile

from gunicorn.util import parse_address

# Descriptors a held stream needs in its worker: the client's socket and the upstream's.
FILES_PER_CONNECTION = 2
# What this file made for the workers to share (metrics, signature memory), removed at exit.
_made: list[str] = []


def bind_hosts(binds: list[str]) -> list[str | None]:
    """The host of each gunicorn bind address: None for a unix socket, the address itself for an inherited
    descriptor (``fd://``: nothing says where it listens, so it counts as exposed)."""
    hosts: list[str | None] = []
    for bind in binds:
        address = parse_address(bind)
        if isinstance(address, tuple):
            hosts.append(address[0] or "0.0.0.0")
        elif isinstance(address, int):
            hosts.append(bind)
        else:
            hosts.append(None)
    return hosts


def refuse_if_exposed(server) -> None:  # noqa: ANN001 - gunicorn's Arbiter
    """Stop before binding when the gateway would be reachable from other machines without API keys."""
    from gateway.config import ConfigError, Settings
    from gateway.security import exposure_error, loopback_name

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        _halt(server, str(exc))
    hosts = bind_hosts(server.cfg.bind)
    problem = exposure_error(hosts, settings.api_keys, settings.allow_no_auth)
    if problem:
        _halt(server, problem)
    if not settings.api_keys and any(host is not None and not loopback_name(host) for host in hosts):
        server.log.warning("listening on %s without API keys (GATEWAY_ALLOW_NO_AUTH): whatever is in front of "
                           "the gateway must check who connects", ", ".join(server.cfg.bind))


def _halt(server, message: str) -> None:  # noqa: ANN001
    """gunicorn prints a RuntimeError from the master as ``Error: ...`` (on stderr) and exits with status 1."""
    if server.pidfile is not None:
        server.pidfile.unlink()
    raise RuntimeError(message)


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards ``wanted`` (never past the hard limit); the new soft limit.

    Many systems start services with a soft limit of 1,024 descriptors: with two per stream a worker would
    refuse connections after about 500 streams, far below its ``worker_connections``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    return soft


def share_metrics_between_workers() -> str:
    """Point every worker's prometheus_client at one directory, emptied, so /metrics shows the totals.

    Set in the master before any worker starts (the workers inherit the environment; prometheus_client reads it
    when first imported). A directory given in ``PROMETHEUS_MULTIPROC_DIR`` is used and emptied, as
    prometheus_client requires between runs; otherwise a temporary one is made, and removed at exit.
    prometheus_client itself is not imported here: it imports ssl, which the master must not.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from pathlib import Path

        from gateway.security import private_dir

        private_dir(Path(directory))
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)
    else:
        directory = tempfile.mkdtemp(prefix="gateway-metrics-")
        _made.append(directory)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def share_memory_between_workers() -> str:
    """One directory for the state the workers share (``GATEWAY_SHARED_STATE_DIR``, else a temporary one).

    A client's next turn reaches whichever worker takes its connection; the signatures and the thinking kept
    for it, cooldowns and the rest must be there too (``gateway/state/local.py``, or Redis when configured).
    """
    directory = os.environ.get("GATEWAY_SHARED_STATE_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="gateway-state-")
        _made.append(directory)
        os.environ["GATEWAY_SHARED_STATE_DIR"] = directory
    return directory


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's Arbiter; workers inherit the master's limits
    refuse_if_exposed(server)
    share_metrics_between_workers()
    share_memory_between_workers()
    wanted = server.cfg.worker_connections * FILES_PER_CONNECTION + 256
    limit = raise_open_files_limit(wanted)
    if limit < wanted:
        server.log.warning("open-file limit %d is below the %d that %d worker connections need; raise it "
                           "(ulimit -n) or lower --worker-connections", limit, wanted, server.cfg.worker_connections)


def post_fork(server, worker) -> None:  # noqa: ANN001
    """A worker's files are its user's alone, whatever umask gunicorn was started with: prometheus_client makes
    its metric files with the umask's mode (the gateway's own files set 0600 themselves)."""
    os.umask(0o077)


def child_exit(server, worker) -> None:  # noqa: ANN001
    """A worker ended: its live gauges (streams in flight) stop counting; its counters keep their totals.

    What ``prometheus_client.multiprocess.mark_process_dead`` does, without importing it into the master.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for live in glob.glob(os.path.join(directory, f"gauge_live*_{worker.pid}.db")):
            os.remove(live)


def on_exit(server) -> None:  # noqa: ANN001
    for directory in _made:
        shutil.rmtree(directory, ignore_errors=True)
