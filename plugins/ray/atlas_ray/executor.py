"""Executor ``ray``: the missing chunks of a samples store, collected on a Ray cluster by a Ray Data actor pool.

The driver (the build's own process) turns the build into a :class:`atlas_core.stages.collect.CollectTask`
(plain data: the model's file or import path, its backend and input options, the images, the layer, the options
that shape the samples, the store's folder) and maps the numbers of the missing chunks through a fixed pool of
``workers`` actors (``Dataset.map_batches`` with the callable class :class:`ChunkWorker`). Each actor opens the
model once, from that description, with ``threads`` CPU threads (and a GPU where ``gpus`` asks for one); each
call collects one whole chunk and writes it into the store itself, atomically, the same file the local executor
writes. Only chunk numbers and image counts travel back; the driver's progress bar advances chunk by chunk.

Failures. An actor that dies (killed, out of memory, its node lost) aborts the dataset; every chunk written
until then stays, and the driver maps the chunks still missing through a fresh pool, up to ``retries`` times;
whatever is left after that is collected by the next ``atlas build`` (the core names the chunks and says so).
Ray's own actor restarts are off by default (``restarts=0``, ``max_restarts=0``): the driver's retry does the same
from what is on disk, and a restartable actor with its constructor arguments in the object store makes Ray print
an error line on the user's terminal at every start. A large pool should turn them on (``restarts=3``): a lost
actor is restarted and only its own chunks are retried, while the rest of the pool goes on.

Ray is imported when the executor collects, never when it is registered or created.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from contextlib import contextmanager
from typing import Optional

import numpy as np

from atlas_core.stages.collect import CollectTask
from atlas_core.types import UsageError

OPTIONS = {"workers": None, "address": None, "threads": 1, "gpus": "auto", "retries": 2, "restarts": 0}
# losses of a worker or a node: the driver maps the missing chunks again
LOST = ("ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError",
        "OwnerDiedError", "ObjectReconstructionFailedError", "RaySystemError", "OutOfMemoryError")


class ChunkWorker:
    """One actor of the pool: the task opened once (model, images, store), then one chunk per call."""

    def __init__(self, task: CollectTask, threads: int, device: Optional[str] = None):
        options = dict(task.input_options, threads=threads)
        if device:
            options["device"] = device
        self.error: Optional[str] = None
        try:
            meta = os.path.join(task.store_root, task.store_key, "meta.json")
            if not os.path.isfile(meta):
                import socket
                raise UsageError(f"the samples store {os.path.dirname(meta)} is not visible on the Ray node "
                                 f"{socket.gethostname()}: put the atlas folder on a filesystem that the driver "
                                 "and every worker share")
            self.collector = dataclasses.replace(task, input_options=options).open()
        except UsageError as exc:  # told on the first chunk: an actor's failed __init__ reaches the driver as text
            self.error = str(exc)

    def __call__(self, batch: dict) -> dict:
        """Collect and write the chunks of ``batch["chunk"]``; a user's error (or the machine's, such as a full
        disk) comes back as the row's ``error`` (Ray keeps only the text of a worker's exception)."""
        chunks = [int(k) for k in batch["chunk"]]
        images, errors = [], []
        for k in chunks:
            error, n = self.error or "", 0
            if not error:
                try:
                    n = self.collector.collect(k)
                except UsageError as exc:
                    error = str(exc)
                except OSError as exc:
                    error = f"{exc.strerror or exc}" + (f" (writing {exc.filename})" if exc.filename else "")
            images.append(n)
            errors.append(error)
        return {"chunk": np.asarray(chunks, np.int64), "images": np.asarray(images, np.int64),
                "error": np.asarray(errors, dtype=object)}


class RayExecutor:
    """Executor ``ray`` (see the module's docstring). Options: ``workers`` (actors; default one per ``threads``
    CPUs of the cluster, or one per GPU), ``address`` (a running cluster, e.g. ``auto`` or ``HOST:6379``; none:
    a local cluster of ``workers`` x ``threads`` CPUs is started and stopped), ``threads`` (CPU threads per
    worker, 1), ``gpus`` (GPUs per worker: ``auto`` is 1 where the cluster has GPUs, else 0; a fraction shares
    a GPU between workers), ``retries`` (fresh pools for the chunks left by lost workers, 2) and ``restarts``
    (Ray's own restarts of a lost actor, 0; for large pools, where a fresh pool costs every worker's chunk)."""

    name = "ray"
    options = dict(OPTIONS)

    def collect(self, state, chunks, progress) -> None:
        chunks = [int(k) for k in chunks]
        if not chunks:
            return
        opts = checked(state.executor_options)
        task = CollectTask.from_state(state)
        store = state.store
        size = {k: store.chunk_range(k)[1] - store.chunk_range(k)[0] for k in chunks}
        for tmp in store.root.glob(".chunk-*.tmp"):  # left by a worker killed while writing (this build holds the lock)
            tmp.unlink(missing_ok=True)
        ray = _import_ray()
        with _quiet() as silence, _cluster(ray, opts, silence) as resources:
            gpus = opts["gpus"]
            if gpus == "auto":
                gpus = 1 if resources.get("GPU", 0) >= 1 else 0
            workers = opts["workers"] or max(1, int(resources.get("GPU", 0) // gpus) if gpus else
                                             int(resources.get("CPU", 1) // opts["threads"]))
            reported: set = set()
            for attempt in range(opts["retries"] + 1):
                todo = [k for k in store.missing_chunks() if k in size]
                if not todo:
                    break
                try:
                    for k in _map(ray, task, todo, workers, opts["threads"], gpus, opts["restarts"]):
                        if k not in reported:
                            reported.add(k)
                            progress(size[k])
                except Exception as exc:  # noqa: BLE001 - sorted below: a user's error, a lost worker, or a bug
                    _reraise_unless_lost(exc)
                    missing = set(store.missing_chunks())
                    for k in [k for k in size if k not in reported and k not in missing]:
                        reported.add(k)  # written by a worker that died before it could say so
                        progress(size[k])
                    left = len([k for k in missing if k in size])
                    more = (f"collecting them again with a fresh pool (retry {attempt + 1} of {opts['retries']})"
                            if attempt < opts["retries"] else "rerun atlas build to collect them")
                    state.log(f"ray: a worker was lost ({_lost_name(exc)}); {left} chunks are missing: {more}")
            missing = set(store.missing_chunks())
            unseen = sorted(k for k in reported if k in missing)
            if unseen:
                raise UsageError(f"the Ray workers wrote chunks {unseen[:3]} where this machine cannot see them "
                                 f"({store.root}): put the atlas folder on a filesystem that the driver and every "
                                 "worker share")


def checked(options: dict) -> dict:
    """The executor's options, checked (one-line errors) and with their defaults."""
    opts = dict(OPTIONS, **options)
    for name in ("workers", "threads"):
        value = opts[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"ray executor option {name} must be a positive integer, got {value!r}")
    if opts["threads"] is None:
        opts["threads"] = 1
    for name in ("retries", "restarts"):
        value = opts[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"ray executor option {name} must be 0 or a positive integer, got {value!r}")
    gpus = opts["gpus"]
    if gpus != "auto" and (isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0):
        raise UsageError(f"ray executor option gpus must be auto or a number of GPUs per worker, got {gpus!r}")
    if opts["address"] is not None:
        opts["address"] = str(opts["address"])
    return opts


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"the ray executor needs Ray Data ({exc}): pip install 'ray[data]'") from None
    return ray


@contextmanager
def _cluster(ray, opts: dict, silence):
    """The cluster's resources, inside a Ray session: this process's own one if it already has one (used and
    left running), the cluster at ``address``, or a local one started here and stopped at the end."""
    if ray.is_initialized():
        silence()
        yield ray.cluster_resources()
        return
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    address = opts["address"]
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # "local": never the cluster of a RAY_ADDRESS in the environment
            workers = opts["workers"] or max(1, (os.cpu_count() or 1) // opts["threads"])
            ray.init(address="local", num_cpus=workers * opts["threads"], include_dashboard=False,
                     object_store_memory=256 * 1024 ** 2, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"could not start or reach {where}: {first}") from None
    silence()  # the handlers that ray.init set up
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A one-line error at once if nothing listens at ``HOST:PORT`` (``ray.init`` would wait for minutes)."""
    if address in ("auto", "local"):
        return
    import socket
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address must be auto or HOST:PORT (the Ray head's, e.g. 10.0.0.5:6379), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one there with "
                         "ray start --head, or leave --address out for a local one") from None


def _map(ray, task: CollectTask, todo: list, workers: int, threads: int, gpus: float, restarts: int = 0):
    """Map chunk numbers ``todo`` through a fresh pool of actors; yields each chunk's number once it is written.
    ``restarts``: Ray restarts a lost actor that many times, retrying its chunks (0: the pool stops, the driver
    retries)."""
    context = ray.data.DataContext.get_current()
    saved = {name: getattr(context, name) for name in ("enable_progress_bars", "max_consecutive_actor_init_deaths")}
    context.enable_progress_bars = False  # the driver's own bar counts images
    context.max_consecutive_actor_init_deaths = 0  # an actor that cannot open the task fails the run at once
    try:
        items = [{"chunk": k} for k in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            ChunkWorker, batch_size=1, batch_format="numpy",
            fn_constructor_args=(task, threads, "cuda" if gpus else None),
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo)), max_tasks_in_flight_per_actor=2),
            num_cpus=threads, num_gpus=gpus or None,
            max_restarts=restarts, max_task_retries=restarts)  # 0: the driver retries (the module's docstring)
        for row in ds.iter_rows():
            if row["error"]:
                raise UsageError(f"a Ray worker: {row['error']}")
            yield int(row["chunk"])
    finally:
        for name, value in saved.items():
            setattr(context, name, value)


def _causes(exc: BaseException):
    """``exc`` and what it wraps (Ray's ``cause``, Python's ``__cause__`` and ``__context__``)."""
    seen: set = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]


def _lost_name(exc: BaseException) -> Optional[str]:
    """The name of the Ray exception that says a worker or node was lost, or None (an actor whose ``__init__``
    raised was not lost: that is a bug, raised as it is)."""
    for e in _causes(exc):
        if getattr(e, "actor_init_failed", False):
            return None
        for cls in type(e).__mro__:
            if cls.__name__ in LOST:
                return cls.__name__
    return None


def _reraise_unless_lost(exc: BaseException) -> None:
    """Return if ``exc`` is the loss of a worker (the driver retries); raise it otherwise (a user's error told by
    a worker is already a one-line UsageError; anything else is a bug, raised as it is)."""
    if isinstance(exc, (UsageError, OSError)) or _lost_name(exc) is None:
        raise exc


@contextmanager
def _quiet():
    """Ray's logs and warnings off the user's terminal while the executor runs (they stay in Ray's log files):
    Python warnings ignored; calling what it yields raises Ray's console log handlers to CRITICAL (again after
    ``ray.init``, which sets up its own); their levels are restored at the end."""
    saved: dict = {}

    def silence() -> None:
        for name in ("ray", "ray.data"):
            for handler in logging.getLogger(name).handlers:
                if not isinstance(handler, logging.FileHandler) and handler not in saved:
                    saved[handler] = handler.level
                    handler.setLevel(logging.CRITICAL)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # JAX (imported for attribution) warns at every fork; Ray's fork_exec starts its processes at once
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            silence()
            yield silence
    finally:
        for handler, level in saved.items():
            handler.setLevel(level)
