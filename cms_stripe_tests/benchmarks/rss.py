"""Peak RSS of the current process (no third-party imports: also used around the CLI)."""

from __future__ import annotations

import resource
import sys


def own_peak_rss_mb() -> float:
    """This process image's peak RSS in MB.

    Linux's VmHWM belongs to the current address space, so it starts afresh at exec; `ru_maxrss`
    (the fallback elsewhere) also counts the parent's RSS at fork time.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
