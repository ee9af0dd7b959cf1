"""tools/launch.py and resnet_toolkit/distributed.py: a real ps-lite job (scheduler, server, workers) on 127.0.0.1.

The worker here is a tiny kvstore program (no network, no data), so these tests check the launcher alone: the
environment each role gets, that dist_sync really sums every worker's push, that a failed worker ends the whole
job with one clear line, that Ctrl-C is forwarded, and that the ssh path (through a stand-in ``ssh`` that runs
the remote command here) starts the same job. Every address used is 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from resnet_toolkit.distributed import (
    LOOPBACK,
    SERVE_CODE,
    free_port,
    plan_local,
    plan_ssh,
    rank_path,
    read_hostfile,
    ssh_argv,
)
from resnet_toolkit.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "tools" / "launch.py"
JOB_TIMEOUT_S = 90  # the bound within which every job here must end, whatever happens inside it

# Pushes (rank + 1) * (step + 1) to key 0 each step and pulls the stored value: dist_sync without an optimizer
# stores the sum of every worker's push, so with N workers each pull must read (1 + ... + N) * (step + 1).
# `--fail-rank R --fail-step S` makes rank R fail at step S (inside fail_fast_in_job, as train_resnet.py does);
# `--block` makes every worker write a ready file and then wait for ever (for the Ctrl-C test).
WORKER = r'''
import argparse, json, os, sys, time
import resnet_toolkit
import mxnet as mx
from resnet_toolkit.distributed import fail_fast_in_job

p = argparse.ArgumentParser()
p.add_argument("out"); p.add_argument("--steps", type=int, default=5)
p.add_argument("--fail-rank", type=int, default=-1); p.add_argument("--fail-step", type=int, default=-1)
p.add_argument("--block", action="store_true")
a = p.parse_args()
kv = mx.kv.create("dist_sync")
with fail_fast_in_job("worker.py"):
    shape = (2, 3)
    kv.init(0, mx.nd.zeros(shape))
    seen = []
    for step in range(a.steps):
        if kv.rank == a.fail_rank and step == a.fail_step:
            raise RuntimeError(f"rank {kv.rank} fails on purpose at step {step}")
        kv.push(0, mx.nd.ones(shape) * (kv.rank + 1) * (step + 1))
        out = mx.nd.zeros(shape)
        kv.pull(0, out=out)
        seen.append(out.asnumpy().tolist())
    env = {k: os.environ.get(k) for k in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_NODE_HOST", "DMLC_INTERFACE",
                                           "DMLC_NUM_WORKER", "DMLC_NUM_SERVER")}
    with open(os.path.join(a.out, f"rank{kv.rank}.json"), "w") as fh:
        json.dump({"rank": kv.rank, "num_workers": kv.num_workers, "pid": os.getpid(), "seen": seen, "env": env}, fh)
    print(f"rank {kv.rank} pulled {len(seen)} sums", flush=True)
    if a.block:
        open(os.path.join(a.out, f"ready{kv.rank}"), "w").close()
        while True:
            time.sleep(0.1)
'''


@pytest.fixture
def worker_script(tmp_path) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def child_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1")


def run_launch(args: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the launcher to its end; a job that outlives JOB_TIMEOUT_S fails the test, and everything it started
    is killed."""
    try:
        return subprocess.run([sys.executable, str(LAUNCH), *args], capture_output=True, text=True,
                              env=env or child_env(), cwd=cwd, timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        kill_all(started_pids(err))
        pytest.fail(f"the job did not end within {JOB_TIMEOUT_S} s:\n{err}")


def started_pids(launcher_output: str) -> dict[int, str]:
    """{pid: role} from the launcher's 'started ROLE (pid N)' lines."""
    return {int(pid): role for role, pid in re.findall(r"launch: started (.+?) \(pid (\d+)\)", launcher_output)}


def tcp_endpoints(pid: int) -> list[tuple[str, int]]:
    """(address, port) of both ends of every TCP socket ``pid`` holds, from /proc (IPv4 and IPv6 tables)."""
    import ipaddress

    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ends = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] not in inodes:
                continue
            for end in fields[1:3]:
                hex_addr, hex_port = end.split(":")
                raw = bytes.fromhex(hex_addr)
                # /proc prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                address = ipaddress.ip_address(raw)
                if getattr(address, "ipv4_mapped", None):
                    address = address.ipv4_mapped
                if int(hex_port, 16) != 0 or str(address) not in ("0.0.0.0", "::"):  # unconnected remote end
                    ends.append((str(address), int(hex_port, 16)))
    return ends


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def is_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for a parent that is not ours)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


# ------------------------------------------------------------------------------------------- plans (no MXNet)
def test_local_plan_puts_every_role_on_loopback():
    tasks = plan_local(["python", "train.py", "--kv-store", "dist_sync"], num_workers=2, num_servers=1, port=9123,
                       python="/venv/bin/python")
    assert [t.role for t in tasks] == ["scheduler", "server", "worker", "worker"]
    for task in tasks:
        assert task.env == {"DMLC_ROLE": task.role, "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": "9123",
                            "DMLC_NUM_WORKER": "2", "DMLC_NUM_SERVER": "1", "DMLC_NODE_HOST": "127.0.0.1",
                            "DMLC_INTERFACE": "lo"}
    assert tasks[0].argv == tasks[1].argv == ["/venv/bin/python", "-c", SERVE_CODE]
    assert tasks[2].argv == ["python", "train.py", "--kv-store", "dist_sync"]


@pytest.mark.parametrize("workers, servers, command, message", [
    (0, 1, ["x"], "-n/--num-workers must be at least 1, got 0"),
    (1, 0, ["x"], "-s/--num-servers must be at least 1, got 0"),
    (1, 1, [], "no training command given (put it after the launcher's options)"),
])
def test_local_plan_rejects_bad_counts(workers, servers, command, message):
    with pytest.raises(UserError) as exc:
        plan_local(command, workers, servers, 9000)
    assert str(exc.value) == message


def test_hostfile_parsing_and_errors(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# cluster\nnode-a\n\nnode-b:2222  # second\nnode-c slots=4\n")
    assert read_hostfile(hosts) == [("node-a", 22), ("node-b", 2222), ("node-c", 22)]
    hosts.write_text("node-a:ssh\n")
    with pytest.raises(UserError, match=r"hosts:1: expected 'host' or 'host:port', got 'node-a:ssh'"):
        read_hostfile(hosts)
    hosts.write_text("# nothing\n")
    with pytest.raises(UserError, match="lists no hosts"):
        read_hostfile(hosts)
    with pytest.raises(UserError, match="cannot read host file"):
        read_hostfile(tmp_path / "absent")


def test_ssh_plan_spreads_servers_then_workers_round_robin():
    tasks = plan_ssh(["python", "train.py", "--data-dir", "my data"], [("a", 22), ("b", 2200)], num_workers=3,
                     num_servers=1, root_uri="10.0.0.1", port=9100, workdir="/srv/job dir", python="/py",
                     interface="eth1")
    assert [t.name for t in tasks] == ["scheduler", "server on a", "worker on b", "worker on a", "worker on b"]
    assert tasks[0].argv == ["/py", "-c", SERVE_CODE]
    assert tasks[0].env["DMLC_ROLE"] == "scheduler" and tasks[0].env["DMLC_NODE_HOST"] == "10.0.0.1"
    worker = tasks[2].argv
    assert worker[:-1] == ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", "-tt", "-p", "2200", "b"]
    assert worker[-1] == ("cd '/srv/job dir' && env DMLC_INTERFACE=eth1 DMLC_NODE_HOST=b DMLC_NUM_SERVER=1 "
                          "DMLC_NUM_WORKER=3 DMLC_PS_ROOT_PORT=9100 DMLC_PS_ROOT_URI=10.0.0.1 DMLC_ROLE=worker "
                          "python train.py --data-dir 'my data'")


def test_rank_path():
    assert rank_path("log/train.log", 1, 2) == "log/train-1.log"
    assert rank_path("train.log", 0, 1) == "train.log"
    assert rank_path("model/resnet", 3, 4) == "model/resnet-3"


def test_free_port_is_bindable_on_loopback():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))


# ----------------------------------------------------------------------------------------------- real jobs
def test_two_workers_sum_their_pushes(tmp_path, worker_script):
    """scheduler + 1 server + 2 workers: every pull reads the sum of both workers' pushes; exit 0; all ended."""
    proc = run_launch(["-n", "2", "-s", "1", "--launcher", "local", sys.executable, str(worker_script),
                       str(tmp_path), "--steps", "4"])
    assert proc.returncode == 0, proc.stderr
    assert "launch: every worker finished" in proc.stderr
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, result in enumerate(results):
        assert result["rank"] == rank and result["num_workers"] == 2
        assert result["seen"] == [[[3.0 * (step + 1)] * 3] * 2 for step in range(4)]
        assert result["env"] == {"DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "127.0.0.1",
                                 "DMLC_NODE_HOST": "127.0.0.1", "DMLC_INTERFACE": "lo", "DMLC_NUM_WORKER": "2",
                                 "DMLC_NUM_SERVER": "1"}
    pids = started_pids(proc.stderr)
    assert sorted(pids.values()) == ["scheduler", "server", "worker", "worker"]
    assert {r["pid"] for r in results} == {pid for pid, role in pids.items() if role == "worker"}
    # each worker's lines carry its name and pid
    for result in results:
        assert f"[worker {result['pid']}] rank {result['rank']} pulled 4 sums" in proc.stdout.splitlines()
    assert all(is_gone(pid) for pid in pids)


def test_failed_worker_stops_the_job(tmp_path, worker_script):
    """Rank 1 fails at step 2 while rank 0 waits in a pull that can never complete: the launcher names the
    failed worker in one line, ends the scheduler, the server and rank 0, and exits 1 (within JOB_TIMEOUT_S)."""
    proc = run_launch(["-n", "2", "-s", "1", "--grace", "2", sys.executable, str(worker_script), str(tmp_path),
                       "--steps", "1000", "--fail-rank", "1", "--fail-step", "2"])
    assert proc.returncode == 1
    pids = started_pids(proc.stderr)
    failed = re.findall(r"^launch: worker \(pid (\d+)\) exited with status 1; stopping the job$", proc.stderr, re.M)
    assert len(failed) == 1, proc.stderr
    assert "RuntimeError: rank 1 fails on purpose at step 2" in proc.stdout
    assert f"[worker {failed[0]}] RuntimeError: rank 1 fails on purpose at step 2" in proc.stdout
    assert not list(tmp_path.glob("rank*.json"))  # nobody got past the failure
    assert all(is_gone(pid) for pid in pids), pids


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "launcher-killed"])
def test_stopping_the_launcher_ends_everything(tmp_path, worker_script, signum):
    """Ctrl-C (SIGINT) is forwarded to every process, which all end, and the launcher exits 130; a launcher
    killed outright (SIGKILL) takes its children with it (Linux parent-death signal), leaving no orphan."""
    proc = subprocess.Popen([sys.executable, str(LAUNCH), "-n", "2", "-s", "1", "--grace", "2", sys.executable,
                             str(worker_script), str(tmp_path), "--steps", "2", "--block"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    watchdog = threading.Timer(JOB_TIMEOUT_S, proc.kill)
    watchdog.start()
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        while not all((tmp_path / f"ready{r}").exists() for r in range(2)):
            assert proc.poll() is None, "".join(err_lines)
            time.sleep(0.1)
        # The job is up and connected: every TCP socket of all four processes is on 127.0.0.1 at both ends.
        running = started_pids("".join(err_lines))
        endpoints = [end for pid in running for end in tcp_endpoints(pid)]
        proc.send_signal(signum)
        proc.wait()
        reader.join(timeout=10)
    finally:
        watchdog.cancel()
    err = "".join(err_lines)
    pids = started_pids(err)
    assert len(pids) == 4 and set(running) == set(pids)
    assert endpoints and {host for host, _ in endpoints} == {"127.0.0.1"}, endpoints
    if signum == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "launch: received SIGINT; stopping every process of the job" in err
    else:
        assert proc.returncode == -signal.SIGKILL
        deadline = time.monotonic() + JOB_TIMEOUT_S  # the kernel delivers the parent-death signals at once
        while not all(is_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    gone = {pid: is_gone(pid) for pid in pids}
    kill_all(pid for pid, dead in gone.items() if not dead)
    assert all(gone.values()), gone


def test_ssh_launcher_runs_the_job_through_ssh(tmp_path, worker_script):
    """--launcher ssh with a host file naming 127.0.0.1 twice, through a stand-in ``ssh`` on PATH that runs the
    remote command string here (as sshd would, in a shell): the quoting, the cd and the env all take effect."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text('#!/bin/bash\n# ssh [options] HOST COMMAND: check the host, then run COMMAND here\n'
                        'for last; do :; done\n[ "${@: -2:1}" = 127.0.0.1 ] || exit 255\nexec bash -c "$last"\n')
    fake_ssh.chmod(0o755)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\n127.0.0.1:2222\n")
    out_dir = tmp_path / "out dir"
    out_dir.mkdir()
    env = dict(child_env(), PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = run_launch(["-n", "2", "-s", "1", "--launcher", "ssh", "-H", str(hosts), "--host-ip", "127.0.0.1",
                       "--interface", "lo", "--workdir", str(tmp_path), sys.executable, str(worker_script),
                       "out dir", "--steps", "3"], env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert sorted(started_pids(proc.stderr).values()) == ["scheduler", "server on 127.0.0.1", "worker on 127.0.0.1",
                                                          "worker on 127.0.0.1"]
    for rank in range(2):
        result = json.loads((out_dir / f"rank{rank}.json").read_text())
        assert result["seen"] == [[[3.0 * (step + 1)] * 3] * 2 for step in range(3)]
        assert result["env"]["DMLC_NODE_HOST"] == "127.0.0.1" and result["env"]["DMLC_INTERFACE"] == "lo"


@pytest.mark.parametrize("args, message", [
    (["-n", "2", "--launcher", "ssh", "python", "x.py"], "launch.py: error: --launcher ssh needs -H/--hostfile"),
    (["-n", "0", "python", "x.py"], "launch.py: error: -n/--num-workers must be at least 1, got 0"),
    (["-n", "1"], "launch.py: error: no training command given (put it after the launcher's options)"),
])
def test_usage_errors_are_one_line(args, message):
    proc = run_launch(args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message


def test_ssh_argv_quotes_the_remote_command():
    argv = ssh_argv("h", 22, {"A": "x y"}, "/w", ["echo", "$HOME", "a'b"])
    assert argv[-1] == "cd /w && env A='x y' echo '$HOME' 'a'\"'\"'b'"
