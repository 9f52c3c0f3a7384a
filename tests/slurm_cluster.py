"""A REAL single-node Slurm cluster for the tests: munged + slurmctld + slurmd on this machine.

Fixture
    slurm_cluster   session-scoped; ``.conf`` (slurm.conf path), ``.node`` (node name),
                    ``.partitions`` (["debug", "other"]; debug is the default), ``.log_dir``,
                    ``.wait_idle(timeout=60)`` (until no job is queued and the node is idle).

Everything lives in one temp dir: its own munge key and socket, state/spool/log/pid dirs, and
free TCP ports picked at start, so it never meets a system Slurm or munge. ``SLURM_CONF`` points
at it for the session (every child process, app server and ``sbatch`` inherits it) and is
restored afterwards, as are any ``SLURM_*``/``SBATCH_*``/``SQUEUE_*`` variables of the caller's
shell, which would otherwise leak into the tests' jobs.

The one node is the machine itself (``hostname -s``, the CPU/memory topology ``slurmd -C``
reports), and each job takes the whole node (partitions are ``OverSubscribe=EXCLUSIVE``), so a
second job pends with reason Resources/Priority while the first runs. Finished jobs stay known
to ``scontrol``/``squeue -t all`` for an hour (``MinJobAge``). A requeued job pends ``BeginTime``
for the credential lifetime (``cred_expire``, 5 s here, 120 s by default) before it runs again.

Slurm's commands come from Debian's ``slurm-wlm munge``: installed with apt-get when missing and
we run as root (as CI does), otherwise the tests using this fixture skip saying what to install.
The daemons run as root (``SlurmUser=root``), so non-root runs skip too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
PARTITIONS = ["debug", "other"]
#: Seconds to wait for the node to report idle after the daemons start (usually ~2 s).
START_TIMEOUT = 60.0
# Daemons live in /usr/sbin, which a non-login shell may not have on PATH.
_SBIN = "/usr/sbin:/sbin"
# The caller's Slurm settings that must not reach the test cluster's commands and jobs.
_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCANCEL_")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def ensure_slurm() -> None:
    """Slurm's daemons and commands plus munge, installing Debian's ``slurm-wlm munge`` with
    apt-get when they are missing and we run as root (the test command installs what it needs);
    otherwise skip, saying what to install."""
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    missing = [c for c in DAEMONS + CLIENTS if _which(c) is None]
    if missing and is_root and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"]):
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            if r.returncode != 0:
                pytest.fail(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}",
                            pytrace=False)
        missing = [c for c in DAEMONS + CLIENTS if _which(c) is None]
    if missing:
        pytest.skip(f"The Slurm tests start a real Slurm and need {', '.join(missing)}. Install them with:\n"
                    "    sudo apt-get install -y slurm-wlm munge")
    if not is_root:
        pytest.skip("The Slurm tests start slurmctld/slurmd as root (SlurmUser=root); run them as root (CI does).")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line(node: str) -> str:
    """This machine as a slurm.conf NodeName line: slurmd's own view of the topology (so slurmd
    registers without a mismatch), RealMemory a little under the real memory."""
    cpus, mem, topo = os.cpu_count() or 1, 0, ""
    r = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30)
    if r.returncode == 0:
        fields = dict(re.findall(r"(\w+)=(\S+)", r.stdout))
        cpus = int(fields.get("CPUs", cpus))
        mem = int(fields.get("RealMemory", 0))
        topo = " ".join(f"{k}={fields[k]}" for k in ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
                        if k in fields)
    if not mem:
        meminfo = Path("/proc/meminfo").read_text()
        mem = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) // 1024
    real = max(100, int(mem * 0.9))
    return f"NodeName={node} NodeHostname={node} NodeAddr=127.0.0.1 CPUs={cpus} {topo} RealMemory={real} State=UNKNOWN"


def _slurm_conf(root: Path, node: str, munge_socket: Path) -> str:
    ctld_port, slurmd_port = _free_port(), _free_port()
    while slurmd_port == ctld_port:
        slurmd_port = _free_port()
    return f"""\
# A single-node test cluster written by tests/slurm_cluster.py; everything lives under {root}.
ClusterName=medtune-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Our own munged; cred_expire is also how long a requeued job waits before it runs again.
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={root}/plugstack.conf
# No cgroups in a container, no accounting daemon.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Fast scheduling so tests do not wait: every event schedules at once, a full pass every 2 s.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1,batch_sched_delay=0
SchedulerTimeSlice=5
MessageTimeout=5
SlurmdTimeout=30
SlurmctldTimeout=30
BatchStartTimeout=30
InactiveLimit=0
KillWait=5
# Finished jobs stay visible to squeue -t all / scontrol show job for an hour.
MinJobAge=3600
ReturnToService=2
MailProg=/bin/true
{_node_line(node)}
# Each job takes the whole node, so a second one pends while the first runs.
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
PartitionName=other Nodes={node} Default=NO MaxTime=1-00:00:00 State=UP OverSubscribe=EXCLUSIVE
"""


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"--- {path}: (missing)"
    return f"--- {path} (last {min(n, len(lines))} lines)\n" + "\n".join(lines[-n:])


@dataclass
class SlurmCluster:
    """The running test cluster (see the module docstring)."""

    conf: Path
    node: str
    log_dir: Path
    partitions: list[str] = field(default_factory=lambda: list(PARTITIONS))
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=30,
                              env={**os.environ, "SLURM_CONF": str(self.conf)})

    def node_state(self) -> str:
        r = self._run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T")
        return r.stdout.strip().splitlines()[0].strip() if r.returncode == 0 and r.stdout.strip() else ""

    def queued(self) -> list[str]:
        """Ids of the jobs pending, running or completing."""
        r = self._run("squeue", "-h", "-o", "%i")
        return r.stdout.split() if r.returncode == 0 else ["?"]

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no job is in the queue and the node is idle again (ready for the next test)."""
        deadline = time.monotonic() + timeout
        while True:
            queued, state = self.queued(), self.node_state()
            if not queued and state == "idle":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Slurm not idle after {timeout:.0f} s: queued {queued}, node {state!r}\n"
                                   + self.logs())
            time.sleep(0.3)

    def logs(self, n: int = 40) -> str:
        return "\n".join(_tail(p, n) for p in sorted(self.log_dir.glob("*")) if p.is_file())

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while starting the test cluster")


def _start(name: str, args: list[str], log_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    out = open(log_dir / f"{name}.out", "ab")  # the child keeps its own copy of the descriptor
    try:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    finally:
        out.close()


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each daemon we started (by its Popen, so by pid), SIGKILL any that lingers."""
    for proc in reversed(list(procs.values())):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in reversed(list(procs.values())):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd for the session; tear them down at its end."""
    ensure_slurm()
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "run", "munge"):
        (root / sub).mkdir()
    log_dir = root / "log"
    # A unix socket path has ~107 bytes at most; a deep basetemp gets a short private dir instead.
    munge_dir, short_dir = root / "munge", None
    if len(str(munge_dir / "munge.socket")) > 100:
        short_dir = Path(tempfile.mkdtemp(prefix="mt-munge-"))
        munge_dir = short_dir
    munge_dir.chmod(0o755)
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = munge_dir / "munge.socket"
    node = socket.gethostname().split(".")[0]  # `hostname -s`: the name slurmd registers under
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node, munge_socket))
    (root / "plugstack.conf").write_text("")

    saved = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    for k in saved:
        del os.environ[k]
    os.environ["SLURM_CONF"] = str(conf)
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{_SBIN}"}
    cluster = SlurmCluster(conf=conf, node=node, log_dir=log_dir)
    started, failure = time.monotonic(), ""
    try:
        # -f: the tmp dir's parents are not world-searchable, which munged only warns about then.
        cluster.procs["munged"] = _start("munged", [
            _which("munged"), "-F", "-f", f"--key-file={key}", f"--socket={munge_socket}",
            f"--pid-file={munge_dir}/munged.pid", f"--seed-file={munge_dir}/munged.seed",
            f"--log-file={log_dir}/munged.log", "--num-threads=4"], log_dir, env)
        deadline = time.monotonic() + 15
        while not munge_socket.exists():
            cluster.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"munged did not create {munge_socket}")
            time.sleep(0.1)
        cluster.procs["slurmctld"] = _start("slurmctld", [_which("slurmctld"), "-D", "-f", str(conf)],
                                            log_dir, env)
        cluster.procs["slurmd"] = _start("slurmd", [_which("slurmd"), "-D", "-f", str(conf)], log_dir, env)
        deadline = time.monotonic() + START_TIMEOUT
        while (state := cluster.node_state()) != "idle":
            cluster.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node} not idle after {START_TIMEOUT:.0f} s (state {state!r})")
            time.sleep(0.2)
    except Exception as e:  # the daemons' own words say why
        failure = f"Could not start the test Slurm cluster ({conf}): {e}\n{cluster.logs()}"
    if failure:
        _stop(cluster.procs)
        _restore_env(saved)
        if short_dir:
            shutil.rmtree(short_dir, ignore_errors=True)
        pytest.fail(failure, pytrace=False)
    print(f"\nslurm_cluster: up in {time.monotonic() - started:.1f} s ({conf})")
    try:
        yield cluster
    finally:
        try:
            cluster._run("scancel", "--user=root")
            cluster.wait_idle(timeout=30)
        except Exception as e:  # teardown goes on: the daemons must go whatever the jobs do
            print(f"slurm_cluster: jobs still queued at teardown: {e}")
        _stop(cluster.procs)
        _restore_env(saved)
        if short_dir:
            shutil.rmtree(short_dir, ignore_errors=True)


def _restore_env(saved: dict[str, str]) -> None:
    for k in [k for k in os.environ if k.startswith(_ENV_PREFIXES)]:
        del os.environ[k]
    os.environ.update(saved)
