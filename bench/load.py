"""The machine and its load: :func:`machine_info`, other processes' CPU use
(:class:`CpuLoad`), and the :class:`LoadGuard` that runs each measurement only on an idle
machine (or refuses with :class:`LoadRefused`)."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from bench.config import Options


class LoadRefused(RuntimeError):
    """The machine is busy with other work; timings would not mean anything."""


VERBOSE = False  # progress lines on stderr (the command line turns them on)


def progress(message: str) -> None:
    if VERBOSE:
        print(f"bench: {message}", file=sys.stderr, flush=True)


def machine_info(device: str) -> dict:
    """CPU model and cores, torch version and threads, date, host."""
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    info = {
        "host": socket.gethostname(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "mkl": bool(torch.backends.mkl.is_available()),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _proc_stat_jiffies() -> tuple[int, int, int]:
    """``(busy, total, cpus)`` jiffies summed over all CPUs, from ``/proc/stat``."""
    lines = Path("/proc/stat").read_text().splitlines()
    vals = [int(v) for v in lines[0].split()[1:]] + [0] * 8
    user, nice, system, idle, iowait, irq, softirq, steal = vals[:8]
    busy = user + nice + system + irq + softirq + steal  # steal: other guests on our cores
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy, busy + idle + iowait, cpus


class CpuLoad:
    """CPU used by *other* processes between :meth:`start` and :meth:`stop`, in cores.

    Busy jiffies of all CPUs (``/proc/stat``) minus this process's own CPU time and
    that of its finished children (training workers, snakemake), scaled to cores.
    Where ``/proc/stat`` is missing, the 1-minute load average stands in.
    """

    def start(self) -> tuple:
        try:
            busy, total, cpus = _proc_stat_jiffies()
        except (OSError, ValueError):
            busy = total = cpus = None
        return busy, total, cpus, sum(os.times()[:4]), time.monotonic()

    def stop(self, mark: tuple) -> dict:
        b0, tot0, cpus, own0, t0 = mark
        load1 = os.getloadavg()[0]
        seconds = time.monotonic() - t0
        if b0 is None:
            return {"other_cores": load1, "loadavg_1min": load1, "seconds": seconds, "method": "loadavg"}
        b1, tot1, _ = _proc_stat_jiffies()
        tick = os.sysconf("SC_CLK_TCK")
        available = max(tot1 - tot0, 1) / tick  # CPU-seconds of all CPUs in the interval
        other = max((b1 - b0) / tick - (sum(os.times()[:4]) - own0), 0.0)
        return {"other_cores": other / available * cpus, "cpus": cpus, "loadavg_1min": load1,
                "seconds": seconds, "method": "/proc/stat"}

    def sample(self, interval: float) -> dict:
        """Other processes' use over the next ``interval`` seconds (this process sleeps)."""
        mark = self.start()
        time.sleep(interval)
        return self.stop(mark)


class LoadGuard:
    """Runs each measurement only on an idle machine, and checks it stayed idle.

    Before: a :meth:`CpuLoad.sample`; while busy it waits (polling) up to
    ``opts.wait_idle`` seconds. During: other processes' CPU use over the
    measurement itself; if above the limit, the measurement is repeated while the
    wait budget lasts. Out of budget it raises :class:`LoadRefused`, unless
    ``opts.allow_loaded``, which keeps the result and marks it ``loaded``.
    Every sample goes to ``log``.
    """

    def __init__(self, opts: Options, probe: CpuLoad | None = None, log: list[dict] | None = None):
        self.opts, self.probe = opts, probe or CpuLoad()
        self.log = [] if log is None else log
        self.loaded: list[str] = []  # measurements kept although the machine was busy
        self._said = -math.inf  # when the last "waiting" line was printed

    def _record(self, phase: str, where: str, sample: dict) -> dict:
        sample = {phase: where, **sample, "loaded": sample["other_cores"] > self.opts.max_other_cpu}
        self.log.append(sample)
        return sample

    def _refuse(self, phase: str, where: str, sample: dict):
        raise LoadRefused(
            f"{phase} {where}: other processes used {sample['other_cores']:.2f} cores "
            f"(limit {self.opts.max_other_cpu}; 1-min load average {sample['loadavg_1min']:.2f}); "
            f"waited up to {self.opts.wait_idle:g} s for an idle machine. Timings would be "
            "meaningless: rerun on an idle machine (or with --wait-idle), or pass --allow-loaded "
            "to record them marked as loaded."
        )

    def run(self, where: str, fn: Callable[[], object]):
        """``fn()`` on an idle machine; see the class docstring."""
        deadline = time.monotonic() + self.opts.wait_idle
        while True:
            before = self._record("before", where, self.probe.sample(self.opts.load_interval))
            if before["loaded"]:
                if time.monotonic() < deadline:
                    if time.monotonic() - self._said > 60:
                        self._said = time.monotonic()
                        progress(f"{where}: waiting for an idle machine (others use {before['other_cores']:.2f} cores)")
                    time.sleep(min(5.0, deadline - time.monotonic()))
                    continue
                if not self.opts.allow_loaded:
                    self._refuse("before", where, before)
            mark = self.probe.start()
            result = fn()
            during = self._record("during", where, self.probe.stop(mark))
            progress(f"{where}: done in {during['seconds']:.1f} s (others used {during['other_cores']:.2f} cores)")
            if not (before["loaded"] or during["loaded"]):
                during["accepted"] = True
                return result
            if time.monotonic() >= deadline:
                if not self.opts.allow_loaded:
                    self._refuse("during", where, during)
                self.loaded.append(where)
                during["accepted"] = True
                return result
