"""The files a run writes while it trains on: checkpoints, the model folder, sample grids.

A paper-preset checkpoint is 220 MB (both networks and Adam's moments); writing and syncing it
took 0.5–1 s here, half a minute of GPU steps at a time. So the loop copies what is to be
written into host memory and hands it to one thread, which writes the files in order while the
next steps run. A failure (a full disk) is raised in the loop at the next write, before a push,
or when the run ends, so it is reported as if the write had happened in the loop.
"""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType


class BackgroundWriter:
    """Writes run one at a time, in the order given, on a thread of their own."""

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None
        self.pending: list[Future] = []

    def __enter__(self) -> "BackgroundWriter":
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="run-writes")
        return self

    def submit(self, write: Callable[..., object], *args: object) -> None:
        if self.pool is None:  # outside a run: write now
            write(*args)
            return
        self.pending.append(self.pool.submit(write, *args))

    def wait(self) -> None:
        """Until every write submitted is done; the first that failed raises its error here."""
        pending, self.pending = self.pending, []
        for write in pending:
            write.result()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.wait()  # even when the run stops on an error: the checkpoints queued are good
        finally:
            assert self.pool is not None
            self.pool.shutdown(wait=True)
            self.pool = None
