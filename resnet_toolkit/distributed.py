"""Start and watch a ps-lite job (MXNet's distributed kvstore): one scheduler, S servers, N workers.

MXNet's ``dist_*`` kvstores are ps-lite underneath. Every process of a job reads its part from environment
variables: ``DMLC_ROLE`` (scheduler, server or worker), where the scheduler listens (``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``), how many of each role there are (``DMLC_NUM_WORKER``, ``DMLC_NUM_SERVER``) and which
address this node announces (``DMLC_NODE_HOST``, ``DMLC_INTERFACE``). A scheduler or server is nothing but
``import mxnet`` with its role set: MXNet serves from inside the import and exits when the workers finish.

ps-lite has no failure handling of its own: when one worker dies, the others block in their next push/pull for
ever. :func:`supervise` is the remedy: it watches every process it started and ends the whole job, with one line
naming the culprit, as soon as any of them fails.

Nothing here runs at import; :mod:`tools.launch` is the command line over it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence, TextIO

from resnet_toolkit.errors import UserError

LOOPBACK = "127.0.0.1"
# What a scheduler or server runs: MXNet serves inside `import mxnet` when DMLC_ROLE is not 'worker'.
SERVE_CODE = "import resnet_toolkit, mxnet"


@dataclass
class Task:
    """One process of the job: ``argv`` run with ``env`` added to the launcher's environment."""

    name: str  # 'scheduler', 'server', 'worker on HOST': what the launcher's messages call it, with the pid
    role: str  # 'scheduler' | 'server' | 'worker'
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def job_env(root_uri: str, root_port: int, num_workers: int, num_servers: int) -> dict[str, str]:
    """The ps-lite variables every role of one job shares."""
    return {"DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(root_port),
            "DMLC_NUM_WORKER": str(num_workers), "DMLC_NUM_SERVER": str(num_servers)}


def check_counts(num_workers: int, num_servers: int) -> None:
    """A clear error for counts ps-lite cannot run with."""
    if num_workers < 1:
        raise UserError(f"-n/--num-workers must be at least 1, got {num_workers}")
    if num_servers < 1:
        raise UserError(f"-s/--num-servers must be at least 1, got {num_servers}")


def plan_local(command: Sequence[str], num_workers: int, num_servers: int, port: int,
               python: str = sys.executable) -> list[Task]:
    """Every process of a one-machine job, all bound to 127.0.0.1 on the loopback interface.

    ``command`` is the worker's argv (e.g. ``['python', 'train_resnet.py', '--kv-store', 'dist_sync']``);
    scheduler and servers run ``python -c "import resnet_toolkit, mxnet"``.
    """
    check_counts(num_workers, num_servers)
    if not command:
        raise UserError("no training command given (put it after the launcher's options)")
    common = job_env(LOOPBACK, port, num_workers, num_servers)
    common.update(DMLC_NODE_HOST=LOOPBACK, DMLC_INTERFACE="lo")
    serve = [python, "-c", SERVE_CODE]
    tasks = [Task("scheduler", "scheduler", serve, dict(common, DMLC_ROLE="scheduler"))]
    # Named by role and pid only: ps-lite gives ranks in the order the workers register, not the start order.
    tasks += [Task("server", "server", serve, dict(common, DMLC_ROLE="server")) for _ in range(num_servers)]
    tasks += [Task("worker", "worker", list(command), dict(common, DMLC_ROLE="worker")) for _ in range(num_workers)]
    return tasks


def read_hostfile(path: str | Path) -> list[tuple[str, int]]:
    """``(host, ssh port)`` per non-empty, non-comment line of ``path`` (``host`` or ``host:port``, port 22)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read host file {path}: {exc.strerror or exc}") from None
    hosts = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].split("slots=", 1)[0].strip()
        if not line:
            continue
        host, _, port = line.partition(":")
        if port and not port.isdigit():
            raise UserError(f"{path}:{number}: expected 'host' or 'host:port', got {raw.strip()!r}")
        hosts.append((host, int(port or 22)))
    if not hosts:
        raise UserError(f"host file {path} lists no hosts")
    return hosts


def ssh_argv(host: str, ssh_port: int, env: dict[str, str], workdir: str, command: Sequence[str]) -> list[str]:
    """``ssh`` argv that runs ``command`` on ``host`` in ``workdir`` with ``env`` set.

    ``-tt`` gives the remote command a terminal, so ending this local ssh process hangs up the remote one too.
    """
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    remote = f"cd {shlex.quote(workdir)} && env {exports} {shlex.join(command)}"
    return ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", "-tt", "-p", str(ssh_port), host,
            remote]


def plan_ssh(command: Sequence[str], hosts: Sequence[tuple[str, int]], num_workers: int, num_servers: int,
             root_uri: str, port: int, workdir: str, python: str = sys.executable,
             interface: str | None = None) -> list[Task]:
    """Every process of a many-machine job: the scheduler here at ``root_uri:port``, servers then workers
    spread over ``hosts`` round-robin through ssh (the placement of MXNet's dmlc_tracker).

    Each remote process announces its host (``DMLC_NODE_HOST``); ``interface`` sets ``DMLC_INTERFACE`` too.
    ``python`` is the interpreter path on the remote machines (same layout as here by default).
    """
    check_counts(num_workers, num_servers)
    if not command:
        raise UserError("no training command given (put it after the launcher's options)")
    common = job_env(root_uri, port, num_workers, num_servers)
    if interface:
        common["DMLC_INTERFACE"] = interface
    serve = [python, "-c", SERVE_CODE]
    scheduler_env = dict(common, DMLC_ROLE="scheduler", DMLC_NODE_HOST=root_uri)
    tasks = [Task("scheduler", "scheduler", serve, scheduler_env)]
    roles = [("server", serve)] * num_servers + [("worker", list(command))] * num_workers
    for slot, (role, argv) in enumerate(roles):
        host, ssh_port = hosts[slot % len(hosts)]
        env = dict(common, DMLC_ROLE=role, DMLC_NODE_HOST=host)
        tasks.append(Task(f"{role} on {host}", role, ssh_argv(host, ssh_port, env, workdir, argv)))
    return tasks


def _kill_me_with_my_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGKILL when the launcher dies (Linux ``PR_SET_PDEATHSIG``),
    so a launcher killed with SIGKILL leaves no orphans behind; None where the call is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)

    return preexec


def _describe_status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Job:
    """The running processes of a job: started in their own process groups, their output prefixed by name."""

    def __init__(self, tasks: Sequence[Task], out: TextIO, say: Callable[[str], None]):
        self.tasks = list(tasks)
        self.out = out
        self.say = say
        self.procs: list[subprocess.Popen] = []
        self._pumps: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        preexec = _kill_me_with_my_parent()
        for task in self.tasks:
            proc = subprocess.Popen(task.argv, env=dict(os.environ, **task.env), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=preexec)
            self.procs.append(proc)
            self.say(f"started {task.name} (pid {proc.pid})")
            pump = threading.Thread(target=self._pump, args=(f"{task.name} {proc.pid}", proc), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.out.write(f"[{name}] {line}\n")
                self.out.flush()

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to the process group of every process still running."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signum)
                except (ProcessLookupError, PermissionError):
                    pass

    def running(self) -> list[int]:
        return [i for i, proc in enumerate(self.procs) if proc.poll() is None]

    def stop(self, grace_s: float, first: int = signal.SIGTERM) -> None:
        """Send ``first`` to everything still running; SIGKILL whatever is left after ``grace_s`` seconds.

        Returns once every process has exited (at most ``grace_s`` plus a moment).
        """
        self.signal_all(first)
        deadline = time.monotonic() + grace_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running():
            self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        # SIGKILL also reaches any grandchild left in each group (e.g. decode threads' helper processes).
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pump in self._pumps:
            pump.join(timeout=1.0)


def supervise(tasks: Sequence[Task], grace_s: float = 5.0, linger_s: float = 30.0, poll_s: float = 0.1,
              out: TextIO | None = None, say: Callable[[str], None] | None = None) -> int:
    """Run ``tasks`` to the end and return the job's exit status.

    - Any process that exits non-zero (or is killed) ends the job: one line names it, every other process gets
      SIGTERM, then SIGKILL after ``grace_s`` seconds; returns 1.
    - When every worker has exited 0, servers and scheduler get ``linger_s`` seconds to finish on their own
      (they do once the workers have said goodbye), then they are ended; returns 0.
    - SIGINT or SIGTERM to the launcher is forwarded as SIGINT to every process, then the same ``grace_s``
      escalation; returns 130 (SIGINT) or 143 (SIGTERM).
    """
    out = out or sys.stdout
    say = say or (lambda text: print(f"launch: {text}", file=sys.stderr, flush=True))
    job = Job(tasks, out, say)
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        job.start()
        workers = [i for i, task in enumerate(job.tasks) if task.role == "worker"]
        workers_done_at = None
        while True:
            if received:
                name = signal.Signals(received[0]).name
                say(f"received {name}; stopping every process of the job")
                job.stop(grace_s, first=signal.SIGINT)
                return 128 + received[0]
            for i, proc in enumerate(job.procs):
                code = proc.poll()
                if code is not None and code != 0:
                    say(f"{job.tasks[i].name} (pid {proc.pid}) {_describe_status(code)}; stopping the job")
                    job.stop(grace_s)
                    return 1
            if workers_done_at is None and all(job.procs[i].poll() == 0 for i in workers):
                workers_done_at = time.monotonic()
            if workers_done_at is not None:
                if not job.running():
                    say("every worker finished")
                    return 0
                if time.monotonic() - workers_done_at > linger_s:
                    left = ", ".join(job.tasks[i].name for i in job.running())
                    say(f"every worker finished but {left} did not exit within {linger_s:g} s; ending it")
                    job.stop(grace_s)
                    return 0
            time.sleep(poll_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ------------------------------------------------------------------------------------------- inside a worker
def in_ps_worker() -> bool:
    """Whether this process is a worker of a ps-lite job (started by a launcher with DMLC_ROLE=worker)."""
    return os.environ.get("DMLC_ROLE") == "worker"


def rank_path(path: str | os.PathLike, rank: int, num_workers: int) -> str:
    """``path`` with ``-{rank}`` before its extension when there are several workers, unchanged otherwise.

    ``train.log`` -> ``train-1.log``; ``model/foo`` (a checkpoint prefix) -> ``model/foo-1``: two workers on one
    machine, or on a shared folder, never write the same file.
    """
    if num_workers <= 1:
        return str(path)
    path = Path(path)
    return str(path.with_name(f"{path.stem}-{rank}{path.suffix}"))


@contextlib.contextmanager
def fail_fast_in_job(prog: str) -> Iterator[None]:
    """In a ps-lite worker, turn a failure inside the block into an immediate exit of this process.

    Why: a worker that leaves normally runs ps-lite's shutdown, a barrier that waits for every other worker, so a
    worker that fails alone would hang there for ever and its launcher would never see it end. Here a
    :class:`UserError` prints ``prog: error: ...`` and exits 2, Ctrl-C exits 130, anything else prints its
    traceback and exits 1, all through ``os._exit`` after flushing the logs. Outside a ps-lite job (and on
    success) the block behaves as if this manager were not there.
    """
    if not in_ps_worker():
        yield
        return
    try:
        yield
        return
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except SystemExit as exc:
        if exc.code in (None, 0):
            raise
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: B036  (a bug anywhere must still end this worker, not hang it)
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
