"""A real single-node SLURM cluster on loopback, for tests.

``start_cluster(workdir)`` installs (only if missing) Debian's SLURM, munge,
slurmdbd and MariaDB, writes the configuration, starts every daemon directly
as a child process (no systemd), waits until the node is idle and ``sacct``
answers, registers cluster/account/user, and returns a :class:`SlurmCluster`.
``SlurmCluster.stop()`` stops every daemon it started, by recorded PID.
``restore_machine(record)`` then leaves the machine as ``record_machine()``
found it before the start: it purges the packages the start installed (and
only those), the files the cluster wrote under /etc and what the purge leaves
behind.  A machine that had SLURM installed before keeps it.

Layout:

* ``/etc/slurm/slurm.conf`` and ``/etc/slurm/slurmdbd.conf``: global paths,
  so that ``sbatch``/``sinfo``/``sacct`` (and Snakemake's slurm executor) find
  the cluster without ``SLURM_CONF``.  Both carry ``MARKER``; a config
  without it is never overwritten.
* ``workdir/logs/<daemon>.log``: stdout+stderr of each daemon (they run in the
  foreground, so there are no daemon-side log files).
* ``workdir/mysql``: a fresh MariaDB data directory (server runs as root,
  TCP on 127.0.0.1 only, on a free port), so accounting starts empty.
* ``workdir/pids.json`` and ``/run/slurm/l2o-cluster-pids.json``: the PIDs
  (with their kernel start times).  If the process that started a cluster was
  killed before ``stop()``, the next ``start_cluster`` stops those daemons by
  these recorded PIDs (only if PID and start time still match).
* SLURM state (owned by the ``slurm`` user, which may not be able to reach a
  0700 pytest tmp dir) lives in ``/var/lib/slurm/{slurmctld,slurmd}`` and is
  wiped at every start.

Only one cluster per machine: the SLURM ports are the default 6817-6819.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "# written by l2o tests/slurm/cluster.py"

PACKAGES = ("slurm-wlm", "munge", "slurmdbd", "mariadb-server")
# binaries we need from those packages
BINARIES = (
    "slurmctld", "slurmd", "slurmdbd", "sinfo", "sbatch", "sacct", "sacctmgr",
    "scontrol", "squeue", "scancel", "munged", "munge", "unmunge",
    "mariadbd", "mariadb", "mariadb-install-db",
)

SLURM_CONF = Path("/etc/slurm/slurm.conf")
SLURMDBD_CONF = Path("/etc/slurm/slurmdbd.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
SLURM_STATE = Path("/var/lib/slurm")
SLURM_RUN = Path("/run/slurm")
MUNGE_RUN = Path("/run/munge")
PID_RECORD = SLURM_RUN / "l2o-cluster-pids.json"

SLURMCTLD_PORT = 6817
SLURMD_PORT = 6818
SLURMDBD_PORT = 6819

CLUSTER_NAME = "l2o"
PARTITION = "debug"
ACCOUNT = "l2o"
DEF_MEM_PER_CPU = 512

# order of start; stop goes in reverse
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


class ClusterError(RuntimeError):
    """Raised when the cluster cannot be installed or started."""


# --------------------------------------------------------------------------
# availability


def _missing_binaries() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def cluster_available() -> tuple[bool, str]:
    """Whether ``start_cluster`` can run here; the reason when it cannot."""
    if not sys.platform.startswith("linux"):
        return False, f"needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return False, "needs root (installs packages, starts SLURM daemons)"
    if _missing_binaries() and shutil.which("apt-get") is None:
        return False, (
            "SLURM/munge/MariaDB binaries missing and no apt-get to install "
            f"them: {', '.join(_missing_binaries())}"
        )
    for conf in (SLURM_CONF, SLURMDBD_CONF):
        if conf.exists() and MARKER not in conf.read_text(errors="replace"):
            return False, (
                f"{conf} exists and was not written by this harness; "
                "refusing to overwrite a real SLURM configuration"
            )
    return True, "root, and SLURM is installed or installable with apt-get"


# --------------------------------------------------------------------------
# helpers


def _env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PATH", "")
    for extra in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if extra not in path.split(":"):
            path = f"{path}:{extra}" if path else extra
    env["PATH"] = path
    env.pop("SLURM_CONF", None)  # the global /etc/slurm/slurm.conf is ours
    env["LC_ALL"] = "C"
    return env


def _run(cmd, timeout: float = 30, check: bool = True, **kw):
    """Run a short command; returns CompletedProcess (text)."""
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_env(), **kw
        )
    except subprocess.TimeoutExpired as e:
        raise ClusterError(f"timed out after {timeout}s: {cmd}") from e
    if check and res.returncode != 0:
        raise ClusterError(
            f"command failed (rc={res.returncode}): {cmd}\n"
            f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
        )
    return res


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chown(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _mkdir(path: Path, user: str = "root", mode: int = 0o755, wipe: bool = False):
    if wipe and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    _chown(path, user)
    path.chmod(mode)


def _write(path: Path, text: str, user: str = "root", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    _chown(tmp, user)
    tmp.chmod(mode)
    tmp.replace(path)


def _proc_starttime(pid: int) -> int | None:
    """Kernel start time (clock ticks since boot) of ``pid``, None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22; the command name (field 2) may contain spaces: split after ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


def reap_stale(timeout: float = 15) -> dict[str, int]:
    """Stop daemons recorded by an earlier start whose owner never called
    ``stop()`` (e.g. the test process was killed).  Only PIDs whose start time
    still matches the record are signalled.  Returns {daemon: pid} stopped."""
    try:
        record = json.loads(PID_RECORD.read_text())
    except (OSError, ValueError):
        return {}
    alive = {
        name: pid for name, (pid, start) in record.items()
        if start is not None and _proc_starttime(pid) == start
    }
    for name in reversed(list(alive)):
        pid = alive[name]
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while _proc_starttime(pid) == record[name][1] and time.monotonic() < deadline:
            time.sleep(0.1)
        if _proc_starttime(pid) == record[name][1]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.5)
    PID_RECORD.unlink(missing_ok=True)
    return alive


# --------------------------------------------------------------------------
# installation


def _dpkg_installed(pkg: str) -> bool:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
    )
    return res.returncode == 0 and res.stdout.strip() == "install ok installed"


@contextlib.contextmanager
def _no_service_actions():
    """Keep the packages' maintainer scripts from starting (or stopping)
    munge/mariadb/slurm as services (sysvinit or systemd): we run our own
    daemons.  A ``policy-rc.d`` already there (Docker images ship one) is
    left as it is."""
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\n# temporary, l2o tests/slurm/cluster.py\nexit 101\n")
        policy.chmod(0o755)
    try:
        yield
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)


def install_packages(timeout: float = 600, machine: MachineRecord | None = None) -> float:
    """apt-get install the packages if any is missing; returns seconds spent.

    With ``machine`` (the state recorded before), the packages this call
    installed (``PACKAGES`` and their dependencies: whatever was not installed
    before and is now) are added to ``machine.installed``, for
    :func:`restore_machine`."""
    t0 = time.monotonic()
    missing = [p for p in PACKAGES if not _dpkg_installed(p)]
    if not missing and not _missing_binaries():
        return 0.0
    if shutil.which("apt-get") is None:
        raise ClusterError(f"packages missing and no apt-get: {missing}")
    before = machine.packages if machine is not None else _installed_packages()
    env = _env()
    env["DEBIAN_FRONTEND"] = "noninteractive"
    try:
        with _no_service_actions():
            cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                 timeout=timeout, check=False)
            if res.returncode != 0:
                # most likely empty package lists (fresh container): update, retry
                upd = subprocess.run(
                    ["apt-get", "update", "-q"], capture_output=True, text=True,
                    env=env, timeout=timeout, check=False,
                )
                if upd.returncode != 0:
                    raise ClusterError(f"apt-get update failed:\n{upd.stderr[-3000:]}")
                res = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False,
                )
    except subprocess.TimeoutExpired as e:
        raise ClusterError(f"apt-get timed out after {timeout}s") from e
    finally:
        # also after a failure: a half-done install is undone by restore_machine
        if machine is not None:
            new = _installed_packages() - before
            machine.installed = sorted(set(machine.installed) | new)
    if res.returncode != 0:
        raise ClusterError(
            f"apt-get install failed (rc={res.returncode}):\n"
            f"{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        )
    still = _missing_binaries()
    if still:
        raise ClusterError(f"binaries still missing after install: {still}")
    return time.monotonic() - t0


# --------------------------------------------------------------------------
# leaving the machine as it was found
#
# With SLURM's client tools installed and an /etc/slurm/slurm.conf whose
# controller does not answer, every `snakemake` start waits ~10 s (the slurm
# executor plugin runs `scontrol show config` when it is imported).  So the
# session that installed the packages removes them again, with what they and
# the cluster left behind.

# Paths the packages or start_cluster create and purging the packages can
# leave behind (MariaDB's data directory and debian.cnf, run dirs, state).
# Removed at restore when they did not exist before the test.
LEFTOVER_PATHS = tuple(Path(p) for p in (
    "/etc/slurm", "/etc/munge", "/etc/mysql",
    "/var/lib/slurm", "/var/lib/munge", "/var/lib/mysql",
    "/var/log/slurm", "/var/log/munge", "/var/log/mysql",
    "/run/slurm", "/run/munge", "/run/mysqld",
))
# files start_cluster writes (or the munge package generates), and munged's seed
OWN_FILES = (SLURM_CONF, SLURMDBD_CONF, MUNGE_KEY, Path("/var/lib/munge/munged.seed"))
# SLURM state of the test cluster (job scripts with their environment, node
# credentials), wiped at every start: emptied at restore (removed if new)
STATE_DIRS = (SLURM_STATE / "slurmctld", SLURM_STATE / "slurmd")
# system users/groups the packages create (purge removes slurm and munge, not mysql)
SYSTEM_ACCOUNTS = ("slurm", "munge", "mysql")
# a process running one of these blocks the removal of the packages
DAEMON_BINARIES = ("slurmctld", "slurmd", "slurmdbd", "slurmstepd", "munged",
                   "mariadbd", "mysqld")


def _installed_packages() -> set[str]:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Status}\n"], capture_output=True, text=True,
        check=False,
    )
    out = set()
    for line in res.stdout.splitlines():
        name, _, status = line.partition("\t")
        if status.strip() == "install ok installed":
            out.add(name)
    return out


def _accounts(db: str) -> set[str]:
    try:
        return {ln.split(":", 1)[0] for ln in Path(db).read_text().splitlines() if ln}
    except OSError:
        return set()


@dataclass
class MachineRecord:
    """What the machine looked like before the cluster was installed and
    started, and what the session then installed."""

    packages: frozenset[str]  # dpkg packages installed before
    paths: frozenset[Path]  # which of LEFTOVER_PATHS, OWN_FILES, STATE_DIRS existed before
    users: frozenset[str]
    groups: frozenset[str]
    installed: list[str] = field(default_factory=list)  # by install_packages


def record_machine() -> MachineRecord:
    return MachineRecord(
        packages=frozenset(_installed_packages()),
        paths=frozenset(p for p in (*LEFTOVER_PATHS, *OWN_FILES, *STATE_DIRS) if p.exists()),
        users=frozenset(_accounts("/etc/passwd")),
        groups=frozenset(_accounts("/etc/group")),
    )


@dataclass
class Restored:
    """What :func:`restore_machine` did."""

    packages: list[str] = field(default_factory=list)  # purged
    paths: list[str] = field(default_factory=list)  # removed
    accounts: list[str] = field(default_factory=list)  # users/groups deleted
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # what could not be undone

    def summary(self) -> str:
        pk = f"{len(self.packages)} packages ({' '.join(self.packages)})" if self.packages \
            else "no packages (none installed by this session)"
        text = (f"removed {pk}; files {self.paths or 'none'}; "
                f"users/groups {self.accounts or 'none'}; {self.seconds:.1f}s")
        return text + (f"; PROBLEMS: {self.problems}" if self.problems else "")


def _daemon_processes() -> list[str]:
    """``"pid name"`` of running processes whose executable is a SLURM, munge
    or MariaDB daemon."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        name = Path(exe.removesuffix(" (deleted)")).name
        if name in DAEMON_BINARIES:
            found.append(f"{entry.name} {name}")
    return found


def restore_machine(machine: MachineRecord, timeout: float = 600) -> Restored:
    """Undo what installing and running the cluster changed, once every
    daemon is stopped: the files the cluster wrote under /etc (only those
    that were not there before), then, if this session installed packages,
    exactly those (``apt-get remove --purge``), what their purge leaves
    behind (``LEFTOVER_PATHS`` that did not exist before) and the system
    users/groups they created; the test cluster's SLURM state is emptied
    (``STATE_DIRS``).  Packages, files and accounts that existed before are
    left alone.  Refuses (``problems``) while a SLURM, munge or
    MariaDB daemon still runs.  A later ``start_cluster`` installs and
    starts everything from scratch again."""
    t0 = time.monotonic()
    done = Restored()
    deadline = time.monotonic() + 20  # slurmstepd may outlive slurmd briefly
    busy = _daemon_processes()
    while busy and time.monotonic() < deadline:
        time.sleep(0.5)
        busy = _daemon_processes()
    if busy:
        done.problems.append(f"daemons still running, nothing removed: {busy}")
        done.seconds = time.monotonic() - t0
        return done

    # our files under /etc (with pre-installed packages, the packages stay but
    # a slurm.conf pointing at a controller that is gone would still make
    # every `scontrol` -- and so every snakemake start -- wait ~10 s)
    for f in OWN_FILES:
        if f in machine.paths or not f.exists():
            continue
        if f in (SLURM_CONF, SLURMDBD_CONF) and MARKER not in f.read_text(errors="replace"):
            continue  # not ours after all
        f.unlink()
        done.paths.append(str(f))

    if machine.installed:
        present = sorted(set(machine.installed) & _installed_packages())
        env = _env()
        env["DEBIAN_FRONTEND"] = "noninteractive"
        cmd = ["apt-get", "remove", "--purge", "-y", "-q", *present]
        # what apt would remove: exactly those, nothing that depends on them
        sim = subprocess.run(["apt-get", "-s", *cmd[1:]], capture_output=True, text=True,
                             env=env, timeout=120, check=False)
        would = {ln.split()[1].split(":")[0] for ln in sim.stdout.splitlines()
                 if ln.startswith(("Purg ", "Remv "))}
        if sim.returncode != 0 or would - set(present):
            done.problems.append(
                f"apt-get would also remove {sorted(would - set(present))} "
                f"(rc={sim.returncode}); nothing removed:\n{sim.stderr[-2000:]}")
        elif present:
            try:
                with _no_service_actions():
                    res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                         timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                res = None
            left = sorted(set(present) & _installed_packages())
            if res is None or res.returncode != 0 or left:
                detail = "timed out" if res is None else (
                    f"rc={res.returncode}\n{res.stdout[-1500:]}\n{res.stderr[-1500:]}")
                done.problems.append(f"apt-get remove --purge: {detail}; still installed {left}")
            done.packages = sorted(set(present) - set(left))
        if not done.problems:
            for name in SYSTEM_ACCOUNTS:
                for kind, db, tool, before in (("user", "/etc/passwd", "userdel", machine.users),
                                               ("group", "/etc/group", "groupdel", machine.groups)):
                    if name in before or name not in _accounts(db):
                        continue
                    r = subprocess.run([tool, name], capture_output=True, text=True, check=False)
                    if r.returncode == 0:
                        done.accounts.append(f"{kind} {name}")
                    else:
                        done.problems.append(f"{tool} {name}: {r.stderr.strip()}")
    if not done.problems:
        # what purging leaves (MariaDB's datadir, /etc/mysql/debian.cnf) and
        # what start_cluster made (/run/slurm with the PID record, state dirs)
        for p in LEFTOVER_PATHS:
            if p in machine.paths or not (p.exists() or p.is_symlink()):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            done.paths.append(str(p))
        for d in STATE_DIRS:
            if not d.is_dir():
                continue
            if d not in machine.paths:
                shutil.rmtree(d)
                done.paths.append(str(d))
                continue
            entries = list(d.iterdir())
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            if entries:
                done.paths.append(f"{d}/* ({len(entries)} entries)")
    done.seconds = time.monotonic() - t0
    return done


# --------------------------------------------------------------------------
# the cluster


@dataclass
class SlurmCluster:
    workdir: Path
    nodename: str
    partition: str = PARTITION
    account: str = ACCOUNT
    cluster_name: str = CLUSTER_NAME
    mysql_port: int = 0
    # slurmctld/slurmd bound to 127.0.0.1 (else 0.0.0.0); slurmdbd 22.05 has
    # no bind option and always listens on 0.0.0.0:6819 (munge-authenticated)
    loopback_bind: bool = False
    # stale daemons of an earlier, never-stopped cluster, stopped at start
    reaped: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    install_seconds: float = 0.0
    start_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    # the machine before the cluster was installed (see restore_machine)
    machine: MachineRecord | None = None

    # -- introspection -----------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def log_tail(self, name: str, n: int = 40) -> str:
        return _tail(self.logs[name], n) if name in self.logs else ""

    def all_log_tails(self, n: int = 25) -> str:
        return "\n".join(
            f"----- {name} ({self.logs[name]}) -----\n{self.log_tail(name, n)}"
            for name in self.logs
        )

    def env(self) -> dict[str, str]:
        """An environment in which the SLURM client tools find this cluster."""
        return _env()

    # -- daemons -----------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], user: str | None = None) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as fh:
            kw = {}
            if user is not None:
                pw = pwd.getpwnam(user)
                kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                env=_env(), cwd="/", start_new_session=True, **kw,
            )
        self.procs[name] = proc
        record = json.dumps(
            {n: [p.pid, _proc_starttime(p.pid)] for n, p in self.procs.items()},
            indent=1,
        )
        (self.workdir / "pids.json").write_text(record)
        PID_RECORD.write_text(record)

    def _wait(self, what: str, check, timeout: float, daemons=()) -> None:
        """Poll ``check()`` (truthy = ready) until ``timeout``; fail fast if
        one of ``daemons`` dies."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = None
        while True:
            for d in daemons:
                rc = self.procs[d].poll()
                if rc is not None:
                    raise ClusterError(
                        f"{d} exited with rc={rc} while waiting for {what}\n"
                        f"----- {d} log tail -----\n{self.log_tail(d)}"
                    )
            try:
                last = check()
                if last is True or (last and not isinstance(last, str)):
                    break
            except ClusterError as e:
                last = str(e)
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"----- {d} log tail -----\n{self.log_tail(d)}" for d in daemons
                )
                raise ClusterError(
                    f"timed out after {timeout}s waiting for {what}; "
                    f"last check: {last!r}\n{tails}"
                )
            time.sleep(0.2)
        self.timings[what] = round(time.monotonic() - t0, 2)

    def stop(self, timeout: float = 20) -> dict[str, int | None]:
        """Stop every daemon we started, in reverse start order: SIGTERM, wait
        up to ``timeout`` s, then SIGKILL and wait.  Running jobs are cancelled
        first.  Returns {daemon: exit code}.  Idempotent."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            # cancel leftover jobs so that no slurmstepd outlives slurmd
            subprocess.run(
                ["scancel", "--full", "-p", self.partition], capture_output=True,
                env=_env(), timeout=15,
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                q = subprocess.run(
                    ["squeue", "-h", "-t", "PD,R,CG,CF,S"], capture_output=True,
                    text=True, env=_env(), timeout=10,
                )
                if q.returncode != 0 or not q.stdout.strip():
                    break
                time.sleep(0.5)
        codes: dict[str, int | None] = {}
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass
                except ProcessLookupError:
                    pass
            codes[name] = proc.poll()
        still = [n for n, p in self.procs.items() if p.poll() is None]
        if not still:
            PID_RECORD.unlink(missing_ok=True)
        if still:
            raise ClusterError(f"daemons still alive after SIGKILL: {still}")
        return codes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# small helpers for tests that drive workflows on the cluster


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()


def process_group_members(pgid: int) -> list[int]:
    """PIDs (zombies excluded) whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # after the ')' closing the command name: state (field 3), ppid, pgrp (field 5)
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def stop_process_group(pgid: int, timeout: float = 20) -> list[int]:
    """Stop the process group ``pgid`` (a child started with
    ``start_new_session=True``, so pgid == its PID, plus everything it
    spawned that stayed in its group): SIGTERM, wait up to ``timeout`` s,
    then SIGKILL.  Returns the PIDs still alive afterwards (empty: all gone).
    The caller still has to ``wait()`` for its own child (a zombie is not
    counted as alive)."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        if not process_group_members(pgid):
            return []
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return []
        deadline = time.monotonic() + wait_s
        while process_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
    return process_group_members(pgid)


def job_ids() -> set[str]:
    """Every job id the cluster knows: in accounting (``sacct``, all users,
    any age) or in the controller's queue (``squeue``)."""
    acct = _run(["sacct", "-X", "-a", "-n", "-P", "-o", "JobID", "-S", "2000-01-01"],
                timeout=30)
    queue = _run(["squeue", "-h", "-o", "%i"], timeout=30)
    return set(acct.stdout.split()) | set(queue.stdout.split())


def queued_jobs() -> str:
    """``squeue`` lines of jobs pending/running/completing ('' when none)."""
    return _run(["squeue", "-h", "-t", "PD,R,CG,CF,S"], timeout=30).stdout.strip()


def wait_queue_empty(timeout: float = 60) -> str:
    """Wait until no job is queued or running; returns what is left ('' when empty)."""
    deadline = time.monotonic() + timeout
    left = queued_jobs()
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = queued_jobs()
    return left


def sacct_jobs(ids, fields=("JobID", "JobName", "Account", "Partition", "State",
                            "Elapsed", "ReqTRES")) -> dict[str, dict[str, str]]:
    """``{job id: {field: value}}`` from accounting for the given job ids."""
    ids = sorted(set(map(str, ids)), key=int)
    if not ids:
        return {}
    res = _run(["sacct", "-X", "-a", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(fields)],
               timeout=30)
    rows = [dict(zip(fields, line.split("|"))) for line in res.stdout.splitlines() if line]
    return {row["JobID"]: row for row in rows}


# --------------------------------------------------------------------------
# configuration


def _node_line() -> tuple[str, str]:
    """(nodename, NodeName=... line) from ``slurmd -C``, with NodeAddr set."""
    res = _run(["slurmd", "-C"], timeout=30)
    first = next(
        (ln for ln in res.stdout.splitlines() if ln.startswith("NodeName=")), None
    )
    if first is None:
        raise ClusterError(f"unexpected `slurmd -C` output:\n{res.stdout}")
    fields = dict(kv.split("=", 1) for kv in first.split())
    nodename = fields["NodeName"]
    # Leave 10% of the memory off: if RealMemory is configured above what slurmd
    # measures at registration, the node is drained ("Low RealMemory").
    mem = int(fields.get("RealMemory", "1024"))
    fields["RealMemory"] = str(max(256, int(mem * 0.9)))
    fields["NodeAddr"] = "127.0.0.1"
    fields["State"] = "UNKNOWN"
    return nodename, " ".join(f"{k}={v}" for k, v in fields.items())


def _resolves_to_loopback(name: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(i[4][0].startswith("127.") for i in infos)


def _slurm_conf(nodename: str, node_line: str, loopback_bind: bool) -> str:
    # NoCtldInAddrAny/NoInAddrAny make slurmctld/slurmd bind to the address
    # the host name resolves to instead of 0.0.0.0; only safe when that is a
    # loopback address (otherwise slurmd would not answer on NodeAddr).
    comm = (
        "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
        if loopback_bind
        else "# CommunicationParameters: host name does not resolve to 127.x, binding 0.0.0.0"
    )
    return f"""{MARKER}
# Single-node test cluster on loopback. Regenerated at every start.
ClusterName={CLUSTER_NAME}
SlurmctldHost={nodename}(127.0.0.1)
SlurmctldPort={SLURMCTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={SLURM_STATE}/slurmctld
SlurmdSpoolDir={SLURM_STATE}/slurmd
SlurmctldPidFile={SLURM_RUN}/slurmctld.pid
SlurmdPidFile={SLURM_RUN}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={DEF_MEM_PER_CPU}
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={SLURMDBD_PORT}
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
{comm}
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
SlurmctldDebug=info
SlurmdDebug=info
{node_line}
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _slurmdbd_conf(mysql_port: int, password: str) -> str:
    return f"""{MARKER}
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
DbdPort={SLURMDBD_PORT}
SlurmUser=slurm
DebugLevel=info
PidFile={SLURM_RUN}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={mysql_port}
StorageUser=slurm
StoragePass={password}
StorageLoc=slurm_acct_db
"""


# --------------------------------------------------------------------------
# start


def start_cluster(workdir: Path, timeout: float = 60,
                  machine: MachineRecord | None = None) -> SlurmCluster:
    """Install if needed, configure and start a one-node SLURM on 127.0.0.1.

    ``timeout`` bounds each individual wait (seconds).  On any failure every
    daemon started so far is stopped and ``ClusterError`` is raised with the
    relevant log tail.  ``machine``: the state recorded before (by
    :func:`record_machine`; recorded here when not given), which gets the
    packages installed now, for :func:`restore_machine` -- also when the
    start fails.
    """
    t_start = time.monotonic()
    ok, reason = cluster_available()
    if not ok:
        raise ClusterError(reason)
    if machine is None:
        machine = record_machine()
    reaped = reap_stale()
    busy = [p for p in (SLURMCTLD_PORT, SLURMD_PORT, SLURMDBD_PORT) if not _port_free(p)]
    if busy:
        raise ClusterError(
            f"ports {busy} already in use on 127.0.0.1: another SLURM running? "
            "(check `ps -eo pid,cmd | grep slurm`)"
        )

    install_seconds = install_packages(machine=machine)

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)

    nodename, node_line = _node_line()
    cluster = SlurmCluster(workdir=workdir, nodename=nodename)
    cluster.install_seconds = round(install_seconds, 2)
    cluster.machine = machine
    cluster.reaped = reaped
    try:
        _start(cluster, node_line, timeout)
    except BaseException as e:
        tails = cluster.all_log_tails()
        try:
            cluster.stop(timeout=10)
        except Exception as stop_err:  # report, but keep the original error
            tails += f"\n(stop after failure also failed: {stop_err})"
        if isinstance(e, ClusterError):
            raise ClusterError(f"{e}\n\n===== daemon logs =====\n{tails}") from e
        raise
    cluster.start_seconds = round(time.monotonic() - t_start, 2)
    return cluster


def _start(c: SlurmCluster, node_line: str, timeout: float) -> None:
    t0 = time.monotonic()
    # ---- directories and configuration ------------------------------------
    _mkdir(SLURM_RUN, "slurm")
    _mkdir(SLURM_STATE, "slurm")
    _mkdir(SLURM_STATE / "slurmctld", "slurm", wipe=True)
    _mkdir(SLURM_STATE / "slurmd", "root", wipe=True)
    _mkdir(MUNGE_RUN, "munge")
    for d in (Path("/var/lib/munge"), Path("/var/log/munge")):
        _mkdir(d, "munge", mode=0o700)

    if not MUNGE_KEY.exists() or MUNGE_KEY.stat().st_size < 32:
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(secrets.token_bytes(1024))
    _chown(MUNGE_KEY.parent, "munge")
    MUNGE_KEY.parent.chmod(0o700)
    _chown(MUNGE_KEY, "munge")
    MUNGE_KEY.chmod(0o600)

    c.mysql_port = _free_port()
    password = secrets.token_hex(12)
    c.loopback_bind = _resolves_to_loopback(c.nodename)
    _write(SLURM_CONF, _slurm_conf(c.nodename, node_line, c.loopback_bind),
           "root", 0o644)
    _write(SLURMDBD_CONF, _slurmdbd_conf(c.mysql_port, password), "slurm", 0o600)
    (c.workdir / "slurm.conf").write_text(SLURM_CONF.read_text())
    c.timings["configure"] = round(time.monotonic() - t0, 2)

    # ---- munged -------------------------------------------------------------
    c._spawn("munged", ["munged", "--foreground", "--force"], user="munge")

    def munge_ok():
        enc = _run(["munge", "-n"], timeout=5, check=False)
        if enc.returncode != 0:
            return enc.stderr.strip()
        dec = _run(["unmunge"], timeout=5, check=False, input=enc.stdout)
        return dec.returncode == 0 or dec.stderr.strip()

    c._wait("munge", munge_ok, timeout, daemons=["munged"])

    # ---- MariaDB: fresh data dir, root, 127.0.0.1 only -----------------------
    mysql = c.workdir / "mysql"
    if mysql.exists():
        shutil.rmtree(mysql)
    datadir = mysql / "data"
    sock = mysql / "mysqld.sock"
    server_opts = [
        "--user=root", f"--datadir={datadir}", "--innodb-log-file-size=16M",
        "--innodb-buffer-pool-size=64M",
    ]
    t1 = time.monotonic()
    mysql.mkdir(parents=True)
    res = _run(
        ["mariadb-install-db", "--no-defaults", *server_opts,
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        timeout=120, check=False,
    )
    (c.workdir / "logs" / "mariadb-install-db.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise ClusterError(
            f"mariadb-install-db failed (rc={res.returncode}):\n{res.stderr[-3000:]}"
        )
    c.timings["mariadb-install-db"] = round(time.monotonic() - t1, 2)
    c._spawn("mariadbd", [
        "mariadbd", "--no-defaults", *server_opts,
        f"--socket={sock}", f"--pid-file={mysql / 'mysqld.pid'}",
        "--bind-address=127.0.0.1", f"--port={c.mysql_port}",
        "--skip-name-resolve", "--skip-log-bin",
        "--innodb-lock-wait-timeout=900", "--max-connections=50",
    ])
    client = ["mariadb", "--no-defaults", "-uroot", f"--socket={sock}", "-N", "-e"]
    c._wait(
        "mariadb",
        lambda: _run([*client, "SELECT 1"], timeout=5, check=False).returncode == 0,
        timeout, daemons=["mariadbd"],
    )
    _run([*client,
          f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}'; "
          "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"],
         timeout=20)

    # ---- slurmdbd -----------------------------------------------------------
    c._spawn("slurmdbd", ["slurmdbd", "-D"])

    def dbd_ok():
        r = _run(["sacctmgr", "-n", "-P", "show", "cluster", "format=cluster"],
                 timeout=10, check=False)
        return r.returncode == 0 or (r.stderr.strip() or f"rc={r.returncode}")

    c._wait("slurmdbd", dbd_ok, timeout, daemons=["mariadbd", "slurmdbd"])

    # ---- accounting: cluster, account, user ---------------------------------
    user = pwd.getpwuid(os.geteuid()).pw_name
    _run(["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME], timeout=20)
    _run(["sacctmgr", "-i", "add", "account", c.account, f"Cluster={CLUSTER_NAME}",
          "Description=l2o tests", "Organization=l2o"], timeout=20)
    _run(["sacctmgr", "-i", "add", "user", user, f"Account={c.account}",
          f"DefaultAccount={c.account}", f"Cluster={CLUSTER_NAME}"], timeout=20)

    # ---- slurmctld, slurmd --------------------------------------------------
    c._spawn("slurmctld", ["slurmctld", "-D", "-c", "-i"])

    def ctld_ok():
        r = _run(["scontrol", "ping"], timeout=10, check=False)
        return ("UP" in r.stdout) or (r.stdout.strip() + r.stderr.strip())

    c._wait("slurmctld", ctld_ok, timeout, daemons=["slurmdbd", "slurmctld"])

    c._spawn("slurmd", ["slurmd", "-D", "-N", c.nodename])

    def node_idle():
        r = _run(["sinfo", "-h", "-N", "-n", c.nodename, "-o", "%T"],
                 timeout=10, check=False)
        state = r.stdout.strip()
        return state == "idle" or (state or r.stderr.strip())

    c._wait("node idle", node_idle, timeout, daemons=["slurmctld", "slurmd"])

    def sacct_ok():
        r = _run(["sacct", "-n", "-X", "-a"], timeout=10, check=False)
        return r.returncode == 0 or (r.stderr.strip() or f"rc={r.returncode}")

    c._wait("sacct", sacct_ok, timeout, daemons=["slurmdbd", "slurmctld"])

    # the association must be visible for `sacctmgr list user` (the plugin's
    # account check) and for AccountingStorageEnforce=associations
    def assoc_ok():
        r = _run(["sacctmgr", "-n", "-P", "-s", "list", "user", user,
                  "format=account"], timeout=10, check=False)
        return c.account in r.stdout.split() or (r.stdout + r.stderr).strip()

    c._wait("association", assoc_ok, timeout, daemons=["slurmdbd", "slurmctld"])


if __name__ == "__main__":  # manual use: python tests/slurm/cluster.py DIR
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--hold", type=float, default=0,
                    help="keep the cluster up this many seconds (0: until Ctrl-C)")
    args = ap.parse_args()
    cl = start_cluster(args.workdir)
    print(f"cluster up in {cl.start_seconds}s (install {cl.install_seconds}s); "
          f"pids {cl.pids}; timings {cl.timings}", flush=True)
    try:
        if args.hold > 0:
            time.sleep(args.hold)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopped:", cl.stop(), flush=True)
