"""A single-node SLURM cluster on the local machine, for testing the `--profile slurm` runs.

It runs the same daemons a real cluster has: munged (authentication), MariaDB + slurmdbd (job
accounting, which `sacct` and the Snakemake executor plugin query), slurmctld (the controller)
and slurmd (the one compute node, ``localhost``). The node declares its real CPUs and memory and
``DOCTUNE_SLURM_GPUS`` (default 1) GPUs as a generic resource (``gres/gpu``), so GPU jobs are
schedulable on a machine without a GPU: each fake GPU is a character device made with
``mknod c 1 3`` under the state directory (real ``/dev/nvidiaN`` devices are used when present).

Everything (configuration, pid files, logs, spool, database) lives under the state directory,
``$DOCTUNE_SLURM_DIR`` (default ``/tmp/doctune-slurm``), never in the repository. Client commands
find the cluster through ``SLURM_CONF=<state dir>/etc/slurm.conf`` (``env`` prints the export line;
``start`` also links ``/etc/slurm/slurm.conf`` to it when that file does not exist yet).

Needs root and Debian/Ubuntu packages (installed with apt-get when missing): slurmctld, slurmd,
slurm-client, slurmdbd, munge, mariadb-server. Only the standard library is used, so
``python -m harness.slurm start|stop|status|env`` works from any Python 3.

Daemons are stopped by the pids recorded in their pid files (checked against the expected
program name first); starting twice or stopping a stopped cluster is harmless.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

APT_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "slurmdbd", "munge", "mariadb-server"]
REQUIRED_PROGRAMS = ["munged", "mungekey", "mariadbd", "mariadb-install-db", "mariadb",
                     "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "sacctmgr", "sinfo"]
DB_NAME = "slurm_acct_db"
DB_USER = "slurm"
# Stop order; start order is the reverse.
DAEMONS = ["slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"]


class ClusterError(RuntimeError):
    """The local SLURM cluster could not be installed, configured or started."""


@dataclasses.dataclass
class ClusterConfig:
    """What the cluster looks like. Every field has an environment override (see from_env)."""

    state_dir: Path = Path("/tmp/doctune-slurm")
    cluster_name: str = "doctune"
    partition: str = "debug"
    account: str = "doctune"
    gpus: int = 1
    gpu_type: str = "fake"
    slurmctld_port: int = 6817
    slurmd_port: int = 6818
    slurmdbd_port: int = 6819
    mysql_port: int = 13306
    kill_wait: int = 30      # seconds between SIGTERM and SIGKILL when a job is cancelled
    min_job_age: int = 300   # seconds a finished job stays visible to squeue/scontrol

    @classmethod
    def from_env(cls, environ=None) -> "ClusterConfig":
        env = os.environ if environ is None else environ
        cfg = cls()
        mapping = {
            "DOCTUNE_SLURM_DIR": ("state_dir", Path),
            "DOCTUNE_SLURM_CLUSTER": ("cluster_name", str),
            "DOCTUNE_SLURM_PARTITION": ("partition", str),
            "DOCTUNE_SLURM_ACCOUNT": ("account", str),
            "DOCTUNE_SLURM_GPUS": ("gpus", int),
            "DOCTUNE_SLURM_GPU_TYPE": ("gpu_type", str),
            "DOCTUNE_SLURM_CTLD_PORT": ("slurmctld_port", int),
            "DOCTUNE_SLURM_SLURMD_PORT": ("slurmd_port", int),
            "DOCTUNE_SLURM_DBD_PORT": ("slurmdbd_port", int),
            "DOCTUNE_SLURM_MYSQL_PORT": ("mysql_port", int),
            "DOCTUNE_SLURM_KILL_WAIT": ("kill_wait", int),
        }
        for var, (field, typ) in mapping.items():
            if env.get(var):
                try:
                    setattr(cfg, field, typ(env[var]))
                except ValueError as exc:
                    raise ClusterError(f"environment variable {var}={env[var]!r}: {exc}") from exc
        for name in ("cluster_name", "partition", "account", "gpu_type"):
            if not re.fullmatch(r"[A-Za-z0-9_]+", getattr(cfg, name)):
                raise ClusterError(f"{name}={getattr(cfg, name)!r}: use letters, digits and _ only")
        if cfg.gpus < 0:
            raise ClusterError(f"DOCTUNE_SLURM_GPUS must be >= 0, got {cfg.gpus}")
        cfg.state_dir = Path(cfg.state_dir).resolve()
        return cfg


@dataclasses.dataclass
class Paths:
    root: Path

    @property
    def etc(self): return self.root / "etc"
    @property
    def slurm_conf(self): return self.etc / "slurm.conf"
    @property
    def gres_conf(self): return self.etc / "gres.conf"
    @property
    def cgroup_conf(self): return self.etc / "cgroup.conf"
    @property
    def slurmdbd_conf(self): return self.etc / "slurmdbd.conf"
    @property
    def log(self): return self.root / "log"
    @property
    def run(self): return self.root / "run"
    @property
    def spool(self): return self.root / "spool"
    @property
    def dev(self): return self.root / "dev"
    @property
    def mysql_data(self): return self.root / "mysql"
    @property
    def mysql_socket(self): return self.run / "mysqld.sock"
    @property
    def munge_key(self): return self.etc / "munge.key"
    # Slurm's client commands (sacctmgr, sacct) reach munged only through its default socket.
    munge_socket: Path = Path("/run/munge/munge.socket.2")
    @property
    def db_password(self): return self.etc / "db_password"

    def pidfile(self, daemon: str) -> Path:
        return self.run / f"{daemon}.pid"

    def logfile(self, daemon: str) -> Path:
        return self.log / f"{daemon}.log"


# ----------------------------------------------------------------------------- configuration

@dataclasses.dataclass
class NodeHardware:
    cpus: int
    boards: int = 1
    sockets_per_board: int = 1
    cores_per_socket: int = 1
    threads_per_core: int = 1
    real_memory_mb: int = 1024


def parse_slurmd_C(text: str) -> NodeHardware:
    """Parse ``slurmd -C`` (``NodeName=x CPUs=2 Boards=1 ... RealMemory=24105``)."""
    fields = dict(re.findall(r"(\w+)=(\S+)", text))
    try:
        return NodeHardware(
            cpus=int(fields["CPUs"]),
            boards=int(fields.get("Boards", 1)),
            sockets_per_board=int(fields.get("SocketsPerBoard", 1)),
            cores_per_socket=int(fields.get("CoresPerSocket", 1)),
            threads_per_core=int(fields.get("ThreadsPerCore", 1)),
            real_memory_mb=int(fields["RealMemory"]),
        )
    except (KeyError, ValueError) as exc:
        raise ClusterError(f"cannot parse `slurmd -C` output {text!r}: {exc}") from exc


def detect_hardware() -> NodeHardware:
    if shutil.which("slurmd"):
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True)
        if out.returncode == 0 and "CPUs=" in out.stdout:
            return parse_slurmd_C(out.stdout.splitlines()[0])
    cpus = os.cpu_count() or 1
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return NodeHardware(cpus=cpus, cores_per_socket=cpus, real_memory_mb=mem_kb // 1024)


def gpu_devices(cfg: ClusterConfig, paths: Paths) -> list[Path]:
    """Real NVIDIA devices when there are enough, else fake character devices in the state dir."""
    real = sorted(Path("/dev").glob("nvidia[0-9]*"), key=lambda p: int(p.name[6:]))
    if len(real) >= cfg.gpus:
        return real[: cfg.gpus]
    return [paths.dev / f"gpu{i}" for i in range(cfg.gpus)]


def node_memory_mb(hw: NodeHardware) -> int:
    """What the node offers to jobs: the detected memory less a margin for the daemons/OS."""
    return max(256, int(hw.real_memory_mb * 0.9))


def render_slurm_conf(cfg: ClusterConfig, paths: Paths, hw: NodeHardware) -> str:
    gres = ""
    if cfg.gpus:
        gres = f" Gres=gpu:{cfg.gpu_type}:{cfg.gpus}"
    lines = [
        "# Written by harness.slurm (python -m harness.slurm); edits are overwritten on start.",
        f"ClusterName={cfg.cluster_name}",
        "SlurmctldHost=localhost",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={cfg.slurmctld_port}",
        f"SlurmdPort={cfg.slurmd_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"StateSaveLocation={paths.spool / 'ctld'}",
        f"SlurmdSpoolDir={paths.spool / 'd'}",
        f"SlurmctldPidFile={paths.pidfile('slurmctld')}",
        f"SlurmdPidFile={paths.pidfile('slurmd')}",
        f"SlurmctldLogFile={paths.logfile('slurmctld')}",
        f"SlurmdLogFile={paths.logfile('slurmd')}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/linux",
        "JobAcctGatherFrequency=10",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        "ReturnToService=2",
        "MpiDefault=none",
        "DefMemPerCPU=1024",
        f"KillWait={cfg.kill_wait}",
        f"MinJobAge={cfg.min_job_age}",
        "GresTypes=gpu",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=localhost",
        f"AccountingStoragePort={cfg.slurmdbd_port}",
        "AccountingStorageTRES=gres/gpu",
        "AccountingStoreFlags=job_comment",  # sacct shows the rule / group and wildcards
        "AccountingStorageEnforce=associations",
        "JobCompType=jobcomp/none",
        f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={hw.cpus} Boards={hw.boards} "
        f"SocketsPerBoard={hw.sockets_per_board} CoresPerSocket={hw.cores_per_socket} "
        f"ThreadsPerCore={hw.threads_per_core} RealMemory={node_memory_mb(hw)}{gres} State=UNKNOWN",
        f"PartitionName={cfg.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def render_gres_conf(cfg: ClusterConfig, paths: Paths) -> str:
    lines = ["# Written by harness.slurm.", "AutoDetect=off"]
    for dev in gpu_devices(cfg, paths):
        lines.append(f"NodeName=localhost Name=gpu Type={cfg.gpu_type} File={dev}")
    return "\n".join(lines) + "\n"


def render_slurmdbd_conf(cfg: ClusterConfig, paths: Paths, password: str) -> str:
    lines = [
        "# Written by harness.slurm.",
        "AuthType=auth/munge",
        "DbdHost=localhost",
        f"DbdPort={cfg.slurmdbd_port}",
        "SlurmUser=root",
        f"PidFile={paths.pidfile('slurmdbd')}",
        f"LogFile={paths.logfile('slurmdbd')}",
        "DebugLevel=info",
        "StorageType=accounting_storage/mysql",
        "StorageHost=127.0.0.1",
        f"StoragePort={cfg.mysql_port}",
        f"StorageUser={DB_USER}",
        f"StoragePass={password}",
        f"StorageLoc={DB_NAME}",
    ]
    return "\n".join(lines) + "\n"


def write_configs(cfg: ClusterConfig, paths: Paths, hw: NodeHardware | None = None) -> None:
    """Write slurm.conf, gres.conf and slurmdbd.conf (mode 600) under state_dir/etc."""
    hw = hw or detect_hardware()
    for d in (paths.etc, paths.log, paths.run, paths.spool / "ctld", paths.spool / "d", paths.dev):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.etc, 0o700)
    if not paths.db_password.exists():
        _write(paths.db_password, os.urandom(12).hex() + "\n", 0o600)
    password = paths.db_password.read_text().strip()
    _write(paths.slurm_conf, render_slurm_conf(cfg, paths, hw), 0o644)
    _write(paths.gres_conf, render_gres_conf(cfg, paths), 0o644)
    paths.cgroup_conf.unlink(missing_ok=True)  # proctrack/linuxproc + task/none: no cgroups
    _write(paths.slurmdbd_conf, render_slurmdbd_conf(cfg, paths, password), 0o600)
    # The etc dir itself must be readable by the client commands (run as root here).
    os.chmod(paths.etc, 0o755)


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- processes

def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _comm(pid: int) -> str | None:
    """The program name of a live process; None when gone or a zombie (reaped if our child)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return None
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None


def running_pid(paths: Paths, daemon: str) -> int | None:
    """The pid in the daemon's pid file if that process is alive and is that program."""
    pid = _read_pid(paths.pidfile(daemon))
    if pid is None:
        return None
    comm = _comm(pid)
    # /proc/PID/comm is truncated to 15 characters
    if comm is None or not daemon.startswith(comm[:15]) and not comm.startswith(daemon[:15]):
        return None
    return pid


def _env(paths: Paths) -> dict:
    env = dict(os.environ)
    env["SLURM_CONF"] = str(paths.slurm_conf)
    return env


def _run(cmd, paths: Paths, check=True, timeout=60, input=None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(paths), timeout=timeout,
                         input=input)
    if check and out.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, cmd))} failed ({out.returncode}): "
                           f"{out.stderr.strip() or out.stdout.strip()}")
    return out


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- last lines of " + str(log) + " ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-20:])
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def _spawn(cmd, paths: Paths, daemon: str) -> None:
    """Start a daemon detached from this process (its own session), output to its log."""
    with open(paths.log / f"{daemon}.out", "ab") as out:
        subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=_env(paths), start_new_session=True, close_fds=True)


def stop_daemon(paths: Paths, daemon: str, timeout: float = 30) -> bool:
    """SIGTERM the daemon by its recorded pid, SIGKILL after `timeout`. False if not running."""
    pid = running_pid(paths, daemon)
    if pid is None:
        paths.pidfile(daemon).unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _comm(pid) is not None:
        time.sleep(0.2)
    if _comm(pid) is not None:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    paths.pidfile(daemon).unlink(missing_ok=True)
    return True


# ----------------------------------------------------------------------------- install

def missing_programs() -> list[str]:
    return [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]


def ensure_installed(quiet: bool = True) -> None:
    """apt-get install the packages when a program is missing. Raises ClusterError if impossible."""
    missing = missing_programs()
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterError(f"missing {', '.join(missing)} and not root, cannot apt-get install")
    if shutil.which("apt-get") is None:
        raise ClusterError(f"missing {', '.join(missing)} and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        log.append(out.stdout[-2000:] + out.stderr[-2000:])
        if out.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({out.returncode}):\n{log[-1]}")
    still = missing_programs()
    if still:
        raise ClusterError(f"still missing after apt-get install: {', '.join(still)}")


# ----------------------------------------------------------------------------- start / stop

def _munge_works(paths: Paths) -> bool:
    if not paths.munge_socket.exists() or not shutil.which("munge"):
        return False
    enc = subprocess.run(["munge", "-n", f"--socket={paths.munge_socket}"], capture_output=True)
    if enc.returncode != 0:
        return False
    dec = subprocess.run(["unmunge", f"--socket={paths.munge_socket}"], input=enc.stdout,
                         capture_output=True)
    return dec.returncode == 0


def _start_munge(paths: Paths) -> None:
    """Start our munged on the default socket unless a munged (ours or the system's) serves it."""
    if running_pid(paths, "munged") or _munge_works(paths):
        return
    paths.munge_socket.parent.mkdir(parents=True, exist_ok=True)
    if not paths.munge_key.exists():
        _run(["mungekey", "--create", "--keyfile", str(paths.munge_key)], paths)
    os.chmod(paths.munge_key, 0o600)
    paths.munge_socket.unlink(missing_ok=True)
    # munged forks into the background and writes its pid file itself.
    _run(["munged", "--force", f"--socket={paths.munge_socket}", f"--key-file={paths.munge_key}",
          f"--pid-file={paths.pidfile('munged')}", f"--log-file={paths.logfile('munged')}",
          f"--seed-file={paths.run / 'munged.seed'}"], paths)
    _wait(lambda: running_pid(paths, "munged") and _munge_works(paths), 20, "munged",
          paths.logfile("munged"))


def _mysql(paths: Paths, sql: str, check=True):
    return _run(["mariadb", "--no-defaults", f"--socket={paths.mysql_socket}", "-uroot",
                 "--batch", "-e", sql], paths, check=check)


def _start_mariadb(cfg: ClusterConfig, paths: Paths) -> None:
    if running_pid(paths, "mariadbd"):
        return
    if not (paths.mysql_data / "mysql").is_dir():
        paths.mysql_data.mkdir(parents=True, exist_ok=True)
        _run(["mariadb-install-db", "--no-defaults", f"--datadir={paths.mysql_data}", "--user=root",
              "--auth-root-authentication-method=socket", "--skip-test-db"], paths, timeout=300)
    paths.mysql_socket.unlink(missing_ok=True)
    _spawn(["mariadbd", "--no-defaults", f"--datadir={paths.mysql_data}", "--user=root",
            f"--socket={paths.mysql_socket}", f"--pid-file={paths.pidfile('mariadbd')}",
            f"--port={cfg.mysql_port}", "--bind-address=127.0.0.1",
            f"--log-error={paths.logfile('mariadbd')}", "--innodb-buffer-pool-size=64M",
            "--innodb-lock-wait-timeout=900", "--max-allowed-packet=64M"], paths, "mariadbd")
    _wait(lambda: running_pid(paths, "mariadbd") and _mysql(paths, "SELECT 1", check=False)
          .returncode == 0, 120, "MariaDB", paths.logfile("mariadbd"))
    password = paths.db_password.read_text().strip()
    for host in ("localhost", "127.0.0.1"):
        _mysql(paths, f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{host}' IDENTIFIED BY '{password}';"
                      f"ALTER USER '{DB_USER}'@'{host}' IDENTIFIED BY '{password}';"
                      f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'{host}';")


def _slurmdbd_ready(paths: Paths) -> bool:
    return _run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], paths,
                check=False, timeout=30).returncode == 0


def _start_slurmdbd(paths: Paths) -> None:
    if running_pid(paths, "slurmdbd"):
        return
    _spawn(["slurmdbd"], paths, "slurmdbd")  # forks; writes PidFile
    _wait(lambda: running_pid(paths, "slurmdbd") and _slurmdbd_ready(paths), 120, "slurmdbd",
          paths.logfile("slurmdbd"))


def _register_accounting(cfg: ClusterConfig, paths: Paths) -> None:
    """Cluster, account and the root user's association (needed with AccountingStorageEnforce)."""
    clusters = _run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], paths).stdout.split()
    if cfg.cluster_name not in clusters:
        _run(["sacctmgr", "-i", "add", "cluster", cfg.cluster_name], paths)
    accounts = _run(["sacctmgr", "-n", "-P", "list", "account", "format=account"], paths).stdout.split()
    if cfg.account not in accounts:
        _run(["sacctmgr", "-i", "add", "account", cfg.account, f"cluster={cfg.cluster_name}",
              "description=doctune test account", "organization=doctune"], paths)
    assoc = _run(["sacctmgr", "-n", "-P", "list", "association", f"cluster={cfg.cluster_name}",
                  "user=root", "format=account"], paths).stdout.split()
    if cfg.account not in assoc:
        _run(["sacctmgr", "-i", "add", "user", "root", f"account={cfg.account}",
              f"cluster={cfg.cluster_name}", f"defaultaccount={cfg.account}"], paths)


def _node_state(paths: Paths) -> str:
    out = _run(["sinfo", "-h", "-N", "-n", "localhost", "-o", "%T"], paths, check=False, timeout=30)
    return out.stdout.strip().lower() if out.returncode == 0 else ""


def _start_slurmctld(paths: Paths) -> None:
    if running_pid(paths, "slurmctld"):
        return
    _spawn(["slurmctld"], paths, "slurmctld")
    _wait(lambda: running_pid(paths, "slurmctld") and
          _run(["scontrol", "ping"], paths, check=False, timeout=30).stdout.find("UP") >= 0,
          60, "slurmctld", paths.logfile("slurmctld"))


def _start_slurmd(paths: Paths) -> None:
    if not running_pid(paths, "slurmd"):
        _spawn(["slurmd", "-N", "localhost"], paths, "slurmd")
        _wait(lambda: running_pid(paths, "slurmd"), 60, "slurmd", paths.logfile("slurmd"))
    ready = ("idle", "mixed", "allocated", "completing")

    def node_ok():
        state = _node_state(paths)
        if state.startswith(("down", "drain", "drained", "draining")) or "drain" in state:
            _run(["scontrol", "update", "nodename=localhost", "state=resume"], paths, check=False)
        return state.rstrip("*~#") in ready
    _wait(node_ok, 60, "node localhost to become idle", paths.logfile("slurmd"))


def _link_etc_conf(paths: Paths) -> None:
    """Let plain `sinfo` find the cluster: link /etc/slurm/slurm.conf when nothing is there."""
    etc = Path("/etc/slurm/slurm.conf")
    try:
        if etc.is_symlink() and "doctune" in os.readlink(etc) or not etc.exists() and not etc.is_symlink():
            etc.parent.mkdir(parents=True, exist_ok=True)
            etc.unlink(missing_ok=True)
            etc.symlink_to(paths.slurm_conf)
    except OSError:
        pass  # SLURM_CONF still works


def start(cfg: ClusterConfig | None = None, install: bool = True) -> Paths:
    """Install when needed, write the configuration and start every daemon not yet running."""
    cfg = cfg or ClusterConfig.from_env()
    if os.geteuid() != 0:
        raise ClusterError("the local SLURM cluster runs its daemons as root; run as root")
    if install:
        ensure_installed()
    elif missing_programs():
        raise ClusterError(f"missing programs: {', '.join(missing_programs())}")
    paths = Paths(cfg.state_dir)
    write_configs(cfg, paths)
    for dev in gpu_devices(cfg, paths):
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # a character device like /dev/null
    _start_munge(paths)
    _start_mariadb(cfg, paths)
    _start_slurmdbd(paths)
    _register_accounting(cfg, paths)  # before slurmctld, so it sees the associations at once
    _start_slurmctld(paths)
    _start_slurmd(paths)
    _link_etc_conf(paths)
    return paths


def stop(cfg: ClusterConfig | None = None) -> list[str]:
    """Stop every daemon of the cluster by its pid file. Returns the names that were running."""
    cfg = cfg or ClusterConfig.from_env()
    paths = Paths(cfg.state_dir)
    stopped = []
    for daemon in DAEMONS:
        if stop_daemon(paths, daemon, timeout=60 if daemon == "mariadbd" else 30):
            stopped.append(daemon)
    return stopped


def status(cfg: ClusterConfig | None = None) -> dict:
    """{daemon: pid or None} plus the node state when slurmctld is up."""
    cfg = cfg or ClusterConfig.from_env()
    paths = Paths(cfg.state_dir)
    result = {d: running_pid(paths, d) for d in reversed(DAEMONS)}
    result["node"] = _node_state(paths) if result["slurmctld"] and paths.slurm_conf.exists() else None
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="slurm_cluster", description="Single-node SLURM cluster on this machine (root).",
        epilog="Environment: DOCTUNE_SLURM_DIR (state, default /tmp/doctune-slurm), "
               "DOCTUNE_SLURM_PARTITION, DOCTUNE_SLURM_ACCOUNT, DOCTUNE_SLURM_GPUS, "
               "DOCTUNE_SLURM_GPU_TYPE, DOCTUNE_SLURM_*_PORT, DOCTUNE_SLURM_KILL_WAIT.")
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "env"])
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    args = parser.parse_args(argv)
    try:
        cfg = ClusterConfig.from_env()
        paths = Paths(cfg.state_dir)
        if args.command in ("stop", "restart"):
            stopped = stop(cfg)
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        if args.command in ("start", "restart"):
            t0 = time.monotonic()
            start(cfg, install=not args.no_install)
            print(f"cluster '{cfg.cluster_name}' up in {time.monotonic() - t0:.1f}s: partition "
                  f"{cfg.partition}, account {cfg.account}, {cfg.gpus} GPU(s) of type {cfg.gpu_type}")
            print(f"export SLURM_CONF={paths.slurm_conf}")
        if args.command == "status":
            st = status(cfg)
            for name, value in st.items():
                print(f"{name:10s} {value if value is not None else 'stopped'}")
            return 0 if all(st[d] for d in DAEMONS) else 3
        if args.command == "env":
            print(f"export SLURM_CONF={paths.slurm_conf}")
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
