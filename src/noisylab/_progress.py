"""Progress display for long passes (a thin layer over ``tqdm``, which is thread-safe)."""
from __future__ import annotations

import sys
import threading


class PassProgress:
    """``callback(desc, rows_done, rows_total)`` for :func:`noisylab._chunks.progress_callback`.

    One ``tqdm`` bar per pass on ``stderr``; a new ``desc`` closes the
    previous bar.  Safe to call from the engine's worker threads.
    """

    def __init__(self, file=None, unit="rows"):
        self.file = file if file is not None else sys.stderr
        self.unit = unit
        self._bar = None
        self._desc = None
        self._lock = threading.Lock()

    def __call__(self, desc: str, done: int, total: int) -> None:
        from tqdm import tqdm

        with self._lock:
            if desc != self._desc or self._bar is None:
                self._close()
                self._desc = desc
                self._bar = tqdm(total=total, desc=desc, unit=self.unit, unit_scale=True, file=self.file,
                                 mininterval=0.5 if self.file.isatty() else 5.0, dynamic_ncols=True, leave=True)
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._close()

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._desc = None

    def close(self) -> None:
        with self._lock:
            self._close()
