"""Gradio's queue, looking for work to start less often while none waits.

Gradio's queue looks for an event to start every millisecond while it has none, and while
events wait for a free place under their concurrency limit: 58–74 ms of CPU a second on an idle
server, counted in every slider move's too (BENCHMARKS.md). Gradio has no setting for it.
`pace_queue` makes that look `IDLE_POLL` apart while no event waits (an event arriving then
waits at most that much more to start), and keeps Gradio's own pace while events wait (the
exports, the encodings and the page's queued steps, four at a time): one starts as soon as a
place frees, not up to 10 ms later. Gradio's look for progress to send (every 10 ms) is left as
it is: a model's download shows its progress through it.
"""

import gradio as gr
from gradio.queueing import Queue

IDLE_POLL = 0.01  # seconds between the queue's looks for work while none waits (Gradio: 0.001)


class PacedQueue(Queue):
    """Gradio's queue whose `sleep_when_free` (the only pause of its loop that starts events)
    depends on whether events wait: Gradio's own value then, `IDLE_POLL` or more otherwise."""

    busy_poll: float  # Gradio's value, as its `__init__` set it

    @property
    def sleep_when_free(self) -> float:
        return self.busy_poll if len(self) else max(self.busy_poll, IDLE_POLL)

    @sleep_when_free.setter
    def sleep_when_free(self, seconds: float) -> None:
        self.busy_poll = seconds


def pace_queue(demo: gr.Blocks) -> gr.Blocks:
    """`demo` (queued already) with its queue paced as `PacedQueue` paces it. A Gradio whose
    queue has no `sleep_when_free` of its own fails here, not silently."""
    queue = demo._queue
    if type(queue) is PacedQueue:
        return demo
    if type(queue) is not Queue or "sleep_when_free" not in vars(queue):
        raise RuntimeError("Gradio's queue changed: see page.queue_pace before upgrading.")
    busy_poll = vars(queue).pop("sleep_when_free")
    queue.__class__ = PacedQueue
    queue.sleep_when_free = busy_poll
    return demo
