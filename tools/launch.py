#!/usr/bin/env python
"""Launch a distributed MXNet job (kvstore dist_sync, dist_device_sync, dist_async) on one machine or many.

    # one machine, 2 workers + 1 server, everything on 127.0.0.1:
    python tools/launch.py -n 2 -s 1 --launcher local \\
        python train_resnet.py --data-type cifar10 --depth 20 --kv-store dist_sync

    # several machines (ssh without a password to each host in the file; same paths on every machine):
    python tools/launch.py -n 4 -s 2 --launcher ssh -H hosts --host-ip 10.0.0.1 \\
        python train_resnet.py --data-type cifar10 --depth 164 --kv-store dist_sync

Starts the ps-lite scheduler (here), the servers and the workers with DMLC_ROLE, DMLC_PS_ROOT_URI,
DMLC_PS_ROOT_PORT, DMLC_NUM_WORKER and DMLC_NUM_SERVER set; prefixes every line they print with their name
(``[worker 1] ...``). When any of them fails, prints one line naming it, ends every process it started (SIGTERM,
then SIGKILL after --grace seconds) and exits 1. Ctrl-C is forwarded to every process.
"""
from __future__ import annotations

import argparse
import os
import sys

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.distributed import LOOPBACK, free_port, plan_local, plan_ssh, read_hostfile, supervise
from resnet_toolkit.errors import UserError, run_cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch.py", description="Launch a distributed MXNet (ps-lite) job: scheduler, servers, workers.",
        usage="%(prog)s -n WORKERS [-s SERVERS] [--launcher local|ssh] [-H HOSTFILE] [options] COMMAND ...")
    parser.add_argument("-n", "--num-workers", type=int, required=True, help="number of worker processes")
    parser.add_argument("-s", "--num-servers", type=int, default=None,
                        help="number of server processes (default: as many as workers, as MXNet's launcher)")
    parser.add_argument("--launcher", choices=("local", "ssh"), default="local",
                        help="local: every process on this machine, on 127.0.0.1; ssh: spread over the hosts in -H")
    parser.add_argument("-H", "--hostfile", help="ssh only: one 'host' or 'host:sshport' per line")
    parser.add_argument("--host-ip", help="ssh only: this machine's address as the other hosts reach it (the "
                                          "scheduler runs here and listens on it)")
    parser.add_argument("--interface", help="ssh only: network interface ps-lite binds on every host (DMLC_INTERFACE)")
    parser.add_argument("--workdir", default=os.getcwd(),
                        help="ssh only: folder to run in on the remote hosts (default: this one; same path there)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs scheduler and servers (default: this one; same path on hosts)")
    parser.add_argument("--port", type=int, default=0, help="scheduler port (default: a free one)")
    parser.add_argument("--grace", type=float, default=5.0,
                        help="seconds between SIGTERM (or a forwarded Ctrl-C) and SIGKILL when the job is stopped")
    parser.add_argument("--linger", type=float, default=30.0,
                        help="seconds servers and scheduler may take to exit after every worker finished")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the worker's command line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    num_servers = args.num_workers if args.num_servers is None else args.num_servers
    if args.launcher == "local":
        port = args.port or free_port(LOOPBACK)
        tasks = plan_local(command, args.num_workers, num_servers, port, python=args.python)
    else:
        if not args.hostfile:
            raise UserError("--launcher ssh needs -H/--hostfile")
        if not args.host_ip:
            raise UserError("--launcher ssh needs --host-ip, this machine's address as the other hosts reach it")
        hosts = read_hostfile(args.hostfile)
        port = args.port or free_port(args.host_ip)
        tasks = plan_ssh(command, hosts, args.num_workers, num_servers, args.host_ip, port, args.workdir,
                         python=args.python, interface=args.interface)
    return supervise(tasks, grace_s=args.grace, linger_s=args.linger)


if __name__ == "__main__":
    run_cli(main)
