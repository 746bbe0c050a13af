"""A throwaway one-node SLURM cluster for tests: munged, slurmctld and slurmd on 127.0.0.1.

Everything lives in one temporary directory: slurm.conf, cgroup.conf, a private munge key and socket,
state, spool and logs. The daemons run in the foreground as children of the test process, on free
ports, so two test sessions on one machine do not collide and nothing under /etc is touched. Clients
(sinfo, sbatch, squeue, srun inside the jobs) find this cluster through ``SLURM_CONF`` in ``env``.

Needs Debian's ``slurmctld slurmd slurm-client munge`` (SLURM 22.05 tested) and root (slurmd launches
jobs as the submitting user). The ``slurm_cluster`` fixture skips with a message otherwise.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "srun", "squeue", "scontrol")
INSTALL_HINT = "slurm not installed: apt-get install slurmctld slurmd slurm-client munge"
NODE = "qialign-node"
PARTITION = "debug"


def _which(name: str) -> str | None:
    # the daemons live in /usr/sbin, which is not on every user's PATH
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    if any(_which(b) is None for b in BINARIES):
        return INSTALL_HINT
    if os.geteuid() != 0:
        return "the SLURM test starts slurmctld/slurmd and must run as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One node (``cpus`` CPUs, ``memory_mb`` of RealMemory) in one default partition."""

    def __init__(self, root: Path, cpus: int = 2, memory_mb: int = 16000, min_job_age: int = 600):
        self.root = Path(root)
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.min_job_age = min_job_age
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        # drop SLURM_* inherited from an enclosing allocation (a test run inside a SLURM job)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env["SLURM_CONF"] = str(self.conf)
        # shims first on PATH (see write_config), /usr/sbin for the daemons
        self.shims = self.root / "bin"
        self.env["PATH"] = os.pathsep.join([str(self.shims), self.env.get("PATH", ""), "/usr/sbin"])

    # -- configuration -------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        if not key.exists():  # a private key: this cluster does not share /etc/munge's
            key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        host = socket.gethostname().split(".")[0]
        ctld_port, slurmd_port = _free_port(), _free_port()
        r = self.root
        node = f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={self.cpus}"
        self.conf.write_text(
            f"""\
# Written by tests/slurm_cluster.py: a one-node test cluster, not for production.
ClusterName=qialigntest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# report the configured CPUs/memory even where the machine is smaller (no enforcement here)
SlurmdParameters=config_overrides
ReturnToService=2
# finished jobs stay visible to squeue/scontrol this long (there is no accounting database)
MinJobAge={self.min_job_age}
SchedulerParameters=sched_interval=2
InactiveLimit=0
KillWait=5
Waittime=0
{node} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""
        )
        # snakemake-executor-plugin-slurm-jobstep (0.6.1) strips SLURM_* (SLURM_CONF too) from the
        # environment of the `srun` it runs inside each job; a real cluster's clients find
        # /etc/slurm/slurm.conf, this one's need SLURM_CONF, so an `srun` shim puts it back.
        self.shims.mkdir(exist_ok=True)
        srun = self.shims / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {_which("srun")} "$@"\n')
        srun.chmod(0o755)
        # only read if a cgroup plugin is configured; kept so the cluster never picks up /etc's
        cgroup = "CgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n"
        (self.root / "cgroup.conf").write_text(cgroup)

    # -- daemons -------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "w")  # noqa: SIM115 - the child keeps its copy
        self.procs[name] = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.root,
        )  # fmt: skip
        log.close()

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        m = self.root / "munge"
        self._spawn("munged", [
            _which("munged"), "--foreground", "--force", f"--socket={self.munge_socket}",
            f"--key-file={m / 'munge.key'}", f"--pid-file={m / 'munged.pid'}",
            f"--log-file={self.root / 'log' / 'munged.log'}", f"--seed-file={m / 'munged.seed'}",
        ])  # fmt: skip
        self._wait(lambda: self.munge_socket.exists(), 15, "munged did not create its socket")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
        ping = lambda: self.run("scontrol", "ping", check=False).returncode == 0  # noqa: E731
        self._wait(ping, 30, "slurmctld is not up")
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
        self._wait(self._node_idle, timeout, f"node {NODE} did not become idle")

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-n", NODE, "-o", "%t", check=False).stdout.strip()
        return out.rstrip("*") == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"{what} within {timeout:.0f} s\n{self.logs()}")

    def logs(self, tail: int = 4000) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*")):
            text = f.read_text(errors="replace")[-tail:]
            parts.append(f"--- {f.name}\n{text}")
        return "\n".join(parts)

    # -- inspection ------------------------------------------------------------------------------
    def job(self, jobid: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (finished jobs stay for MinJobAge seconds)."""
        out = self.run("scontrol", "show", "job", "-o", str(jobid)).stdout
        # Key=Value pairs; values may hold spaces only in a few fields (Comment, Command) we don't parse
        return dict(re.findall(r"(\w[\w:/]*)=(\S*)", out))

    # -- teardown --------------------------------------------------------------------------------
    def _cluster_pids(self) -> list[int]:
        """Processes started for this cluster: they carry SLURM_CONF=<our conf> in their environment
        (slurmstepd, the jobs and their children) or were spawned here."""
        marker = f"SLURM_CONF={self.conf}".encode()
        pids = {p.pid for p in self.procs.values() if p.poll() is None}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                if marker in (d / "environ").read_bytes().split(b"\0"):
                    pids.add(int(d.name))
            except OSError:
                continue
        return sorted(pids)

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:  # cancel what is left and give the job steps a moment to end cleanly
                self.run("scancel", "--full", "--partition", PARTITION, check=False, timeout=10)
                deadline = time.monotonic() + 10
                while (
                    time.monotonic() < deadline
                    and self.run("squeue", "-h", "-t", "PD,R,CG", check=False, timeout=10).stdout.strip()
                ):
                    time.sleep(0.5)
            except subprocess.TimeoutExpired:
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        # anything left (slurmstepd, job steps): terminate, then kill
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = self._cluster_pids()
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if left:
                time.sleep(1)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster for the module; daemons are stopped even if the tests fail."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="qialign-slurm-"))  # short: the munge socket path has a limit
    cluster = SlurmCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
