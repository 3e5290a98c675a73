"""Utilisation sampling for the GPU driver (bench/_gpu_extract.py): GPU utilisation, memory and power (NVML)
every 100 ms in a thread, CPU utilisation (psutil) over the window, and the GPU's name, driver and memory.
Without NVML (a CPU machine) nothing GPU-side is reported.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np


class Sampler:
    """GPU utilisation and memory (NVML) every `interval` s in a thread; CPU utilisation (psutil) over the window."""

    nvml_handle = None
    nvml_tried = False

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.gpu: list[float] = []
        self.mem: list[float] = []
        self.power: list[float] = []
        self.cpu = float("nan")
        self._stop = threading.Event()

    @classmethod
    def handle(cls):
        if not cls.nvml_tried:
            cls.nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                cls.nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            except Exception:  # noqa: BLE001 - no NVML (CPU machine): utilisation is not reported
                cls.nvml_handle = None
        return cls.nvml_handle

    def __enter__(self) -> Sampler:
        try:
            import psutil

            psutil.cpu_percent(None)
        except ImportError:
            pass
        if self.handle() is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import pynvml

        h = self.handle()
        while not self._stop.wait(self.interval):
            try:
                self.gpu.append(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                self.mem.append(pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**30)
                self.power.append(pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
            except Exception:  # noqa: BLE001
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        try:
            import psutil

            self.cpu = psutil.cpu_percent(None)
        except ImportError:
            pass

    def summary(self) -> dict:
        mean = lambda xs: round(float(np.mean(xs)), 1) if xs else None  # noqa: E731
        return {"gpu_util": mean(self.gpu), "gpu_mem_gib": round(max(self.mem), 1) if self.mem else None,
                "gpu_power_w": mean(self.power), "cpu_util": None if math.isnan(self.cpu) else round(self.cpu, 1)}


def gpu_info() -> dict:
    info = {}
    h = Sampler.handle()
    if h is not None:
        import pynvml

        name = pynvml.nvmlDeviceGetName(h)
        drv = pynvml.nvmlSystemGetDriverVersion()
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        info = {"name": name.decode() if isinstance(name, bytes) else name,
                "driver": drv.decode() if isinstance(drv, bytes) else drv,
                "memory_total_gib": round(mem.total / 2**30, 1), "memory_used_gib": round(mem.used / 2**30, 1)}
        with contextlib.suppress(Exception):
            info["cuda_driver"] = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        with contextlib.suppress(Exception):
            info["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
    return info
