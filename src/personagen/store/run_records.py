"""Run records and run locks: where a run writes, and whether the process driving it lives.

A run's record (`<state_dir>/runs/<name>.json`) holds its spec, its output directory, its
state directory and its checkpoint target. It is written (atomically, fsynced) before the
run's id is shown, so `personagen resume RUN_ID` can continue any run whose id was printed,
even one killed before its first checkpoint, and writes the bundle where the run would have.

A run's lock (`<state_dir>/runs/<name>.lock`) is an `flock` held by the process driving the
run. The kernel drops it when that process dies, however it dies (kill -9 included), so a
run recorded as `running` whose lock can be taken has no process left: it was interrupted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from personagen.errors import PersonaGenError

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""What a run id given on the command line may look like (it names the bundle folder)."""
_LOCK_WAIT_SECONDS = 2.0
"""How long a driver waits for a lock held briefly by a liveness check of another process."""


class RunBusy(PersonaGenError):
    """Another live process is driving this run."""


class RunRecord(BaseModel):
    """What a run was started with and where it writes."""

    run_id: str
    spec: dict[str, Any]
    out_dir: str
    state_dir: str
    checkpoint: str | None = None
    host: str
    pid: int
    created_at: float


def _file_stem(run_id: str) -> str:
    if _SAFE_NAME.match(run_id):
        return run_id
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:32]


def record_path(state_dir: str | Path, run_id: str) -> Path:
    """Where the record of `run_id` lives."""
    return Path(state_dir) / "runs" / f"{_file_stem(run_id)}.json"


def lock_path(state_dir: str | Path, run_id: str) -> Path:
    """The file whose `flock` the driving process holds."""
    return Path(state_dir) / "runs" / f"{_file_stem(run_id)}.lock"


def this_host() -> str:
    """The host name recorded with a run's process id."""
    return socket.gethostname()


def write_record(record: RunRecord) -> Path:
    """Write the record atomically and durably (temp file, fsync, rename, fsync the folder)."""
    path = record_path(record.state_dir, record.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    data = record.model_dump_json(indent=1).encode("utf-8")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
    return path


def read_record(state_dir: str | Path, run_id: str) -> RunRecord | None:
    """The run's record, or None when there is none (or it cannot be read)."""
    path = record_path(state_dir, run_id)
    try:
        record = RunRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:
        log.warning("run record %s cannot be read: %s", path, exc)
        return None
    return record if record.run_id == run_id else None


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[str, _Held] = {}
_held_guard = threading.Lock()


class RunLock:
    """The `flock` of one run, held by the process driving it (re-entrant in a process)."""

    def __init__(self, state_dir: str | Path, run_id: str) -> None:
        """Prepare the lock of `run_id` under `state_dir` (taken by `acquire`)."""
        self.path = lock_path(state_dir, run_id)
        self.key = str(self.path.resolve())
        self.run_id = run_id
        self.acquired = False

    def acquire(self, *, wait: float = _LOCK_WAIT_SECONDS) -> None:
        """Take the lock, or raise `RunBusy` naming the process that holds it."""
        with _held_guard:
            held = _held.get(self.key)
            if held is not None:
                held.count += 1
                self.acquired = True
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            started = time.monotonic()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # A liveness check elsewhere holds it for an instant; a driver for longer.
                    if time.monotonic() - started >= wait:
                        owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                        os.close(fd)
                        raise RunBusy(
                            f"run {self.run_id!r} is being driven by another process"
                            + (f" ({owner})" if owner else "")
                            + ": wait for it to end, or stop it first"
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {this_host()}\n".encode(), 0)
            _held[self.key] = _Held(fd, 1)
            self.acquired = True

    def release(self) -> None:
        """Give the lock back (the last holder in this process unlocks the file)."""
        if not self.acquired:
            return
        self.acquired = False
        with _held_guard:
            held = _held.get(self.key)
            if held is None:
                return
            held.count -= 1
            if held.count == 0:
                del _held[self.key]
                os.close(held.fd)  # closing the file drops the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


Liveness = Literal["alive", "dead", "unknown"]


def process_state(
    run_id: str, state_dir: str | Path | None, host: str | None, pid: int | None
) -> Liveness:
    """Whether the process recorded as driving a run still does.

    `dead` only when sure: the run's lock is free (nobody holds it), or, without a lock file,
    its process id no longer exists on this host. Runs of other hosts are `unknown`.
    """
    if host is not None and host != this_host():
        return "unknown"
    if state_dir is not None:
        path = lock_path(state_dir, run_id)
        with _held_guard:
            if str(path.resolve()) in _held:
                return "alive"  # this very process drives it
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            fd = -1
        except OSError:
            return "unknown"
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "alive"
            finally:
                os.close(fd)  # drops the lock if this check took it
            return "dead"
    if pid is None or host is None:
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        return "alive"
    return "alive"
