"""A throw-away one-node SLURM cluster on this machine, from Debian's packages (munge, slurmctld, slurmd).

Everything lives in one folder under /tmp: the munge key and socket, slurm.conf, the state and spool
folders and the logs. The daemons listen on free ports of their own and the node has its own name, so
several clusters (several test runs) can live on one machine. ``stop()`` ends every daemon it started,
by PID. Client commands (sbatch, squeue, scontrol, ...) find this cluster through ``env()``
(SLURM_CONF).

    python tests/slurm_cluster.py          # start one, print its SLURM_CONF, stop it on Ctrl-C
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import free_port

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
BINARIES = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel"]


class ClusterError(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def install_packages(timeout: float = 600) -> str | None:
    """apt-get install the SLURM packages when a binary is missing; the reason when that is impossible."""
    if not missing_binaries():
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM is not installed and there is no apt-get: install {' '.join(PACKAGES)}"
    if os.geteuid() != 0:
        return f"SLURM is not installed and this is not root: apt-get install {' '.join(PACKAGES)}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    proc = run(cmd, timeout=timeout, env=env)
    if proc.returncode != 0:  # the package lists may be missing on a fresh machine
        run(["apt-get", "update", "-qq"], timeout=timeout, env=env)
        proc = run(cmd, timeout=timeout, env=env)
    if proc.returncode != 0 or missing_binaries():
        return f"apt-get install {' '.join(PACKAGES)} failed: {proc.stderr[-500:]}"
    return None


def run(cmd: list[str], timeout: float, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with a hard timeout that kills the command's whole process group by PID."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, **kwargs)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll ``condition()`` until it returns something true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class OneNodeCluster:
    """munged, slurmctld and slurmd for one node (this machine, 127.0.0.1) with ``cpus`` CPUs."""

    def __init__(self, cpus: int | None = None, memory_mb: int | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="nnstudy-slurm-", dir="/tmp"))
        self.folder.chmod(0o755)  # munged (as munge) must reach its folder
        tag = self.folder.name.rsplit("-", 1)[-1].lower()
        self.node = f"nn{tag}"
        self.cluster = f"nn{tag}"
        self.partition = "main"
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb or max(1024, available_memory_mb() - 1024)
        self.conf = self.folder / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}

    # -- start ------------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> OneNodeCluster:
        try:
            self._start_munge(timeout)
            self._write_conf()
            self._write_wrappers()
            self._start("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
            wait_for(lambda: self._alive() and "UP" in self.scontrol("ping").stdout,
                     timeout, "slurmctld to answer", interval=0.5)  # fmt: skip
            self._start("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
            wait_for(self._node_idle, timeout, f"node {self.node} to be idle", interval=0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self, timeout: float) -> None:
        munge = self.folder / "munge"
        munge.mkdir()
        munge.chmod(0o755)  # munged wants its socket's folder open to all (the key stays 0600)
        shutil.chown(munge, "munge", "munge")
        key = munge / "munge.key"
        proc = run(["mungekey", "--create", "--keyfile", str(key)], timeout=60, user="munge")
        if proc.returncode != 0:
            raise ClusterError(f"mungekey failed: {proc.stderr}")
        self.munge_socket = munge / "munge.socket"
        self._start("munged", ["munged", "--foreground", f"--socket={self.munge_socket}", f"--key-file={key}",
                               f"--pid-file={munge / 'munged.pid'}", f"--log-file={self.folder / 'munge.log'}",
                               f"--seed-file={munge / 'munged.seed'}"], user="munge")  # fmt: skip
        wait_for(lambda: self._alive() and self.munge_socket.exists(), timeout, "munged's socket")

    def _write_conf(self) -> None:
        f = self.folder
        for name in ("state", "spool"):
            (f / name).mkdir()
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(f"""\
# A one-node cluster written by tests/slurm_cluster.py
ClusterName={self.cluster}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={f / "state"}
SlurmdSpoolDir={f / "spool"}
SlurmctldPidFile={f / "slurmctld.pid"}
SlurmdPidFile={f / "slurmd.pid"}
SlurmctldLogFile={f / "slurmctld.log"}
SlurmdLogFile={f / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No accounting database: finished jobs stay visible to squeue for MinJobAge seconds, which is what
# the profile's status command (squeue) relies on. Memory is watched by polling (no cgroups here).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={f / "jobcomp.txt"}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
MinJobAge=3600
KillWait=5
InactiveLimit=0
ReturnToService=2
NodeName={self.node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    def _write_wrappers(self) -> None:
        """bin/ with the client commands pinned to this cluster's slurm.conf. SLURM_CONF alone is not enough:
        inside a job, the Snakemake SLURM plugin drops every SLURM_* variable before it calls ``srun``. A real
        cluster has its config at the default path (/etc/slurm/slurm.conf), which this test must not touch."""
        bin_dir = self.folder / "bin"
        bin_dir.mkdir()
        for name in ("sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo", "sacct"):
            real = shutil.which(name)
            if real is None:
                continue
            wrapper = bin_dir / name
            wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {real} "$@"\n')
            wrapper.chmod(0o755)

    def _start(self, name: str, cmd: list[str], **kwargs) -> None:
        log = open(self.folder / f"{name}.out", "ab")  # noqa: SIM115 (the daemon keeps it)
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                            start_new_session=True, **kwargs)  # fmt: skip
        log.close()

    def _alive(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
        return True

    def _node_idle(self) -> bool:
        return self._alive() and self.node_state().startswith("IDLE")

    # -- use --------------------------------------------------------------------------------------
    def env(self, base: dict | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([str(self.folder / "bin"), env.get("PATH", "/usr/bin:/bin"), "/usr/sbin:/sbin"])
        return env

    def command(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(list(cmd), timeout=timeout, env=self.env())

    def scontrol(self, *args: str) -> subprocess.CompletedProcess:
        return self.command("scontrol", *args)

    def node_state(self) -> str:
        proc = self.command("sinfo", "-h", "-n", self.node, "-N", "-o", "%T")
        return proc.stdout.strip().upper()

    def jobs(self) -> list[dict[str, str]]:
        """Every job squeue still knows (running, pending, and finished within MinJobAge)."""
        fields = ["id", "name", "state", "reason", "comment"]
        proc = self.command("squeue", "-h", "-a", "-t", "all", "-o", "%i|%j|%T|%r|%k")
        if proc.returncode != 0:
            raise ClusterError(f"squeue failed: {proc.stderr}")
        return [dict(zip(fields, line.split("|", 4))) for line in proc.stdout.splitlines() if line.strip()]

    def job_details(self, job_id: str) -> str:
        return self.scontrol("show", "job", job_id).stdout

    def logs(self) -> str:
        parts = []
        for path in sorted(self.folder.glob("*.log")) + sorted(self.folder.glob("*.out")) + [self.folder / "munge.log"]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    # -- stop -------------------------------------------------------------------------------------
    def stop(self, timeout: float = 60) -> None:
        """Cancel what still runs, then end slurmd, slurmctld and munged (in that order) by PID."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.command("scancel", "--full", "-p", self.partition, timeout=30)
                wait_for(lambda: not [j for j in self.jobs() if j["state"] in ("RUNNING", "PENDING", "COMPLETING")],
                         timeout, "the cancelled jobs to end", interval=0.5)  # fmt: skip
            except (ClusterError, subprocess.TimeoutExpired):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def available_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 4096


if __name__ == "__main__":
    reason = install_packages()
    if reason:
        raise SystemExit(reason)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cluster = OneNodeCluster().start()
    print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C stops the cluster")
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.stop()
