"""The photos a public app holds for its users: each user's own, bounded per user and overall.

A photo belongs to the session that uploaded it: its id is a random token that only that session
may use, so a leaked or guessed id is worth nothing to another session. Two sessions that upload
the same photo (everyone clicking one example) share the encoder's work behind the scenes — one
prepared value, counted once in memory — but each gets its own id.

Memory is shared fairly, and a burst of visitors cannot flush the store. A session past its own
budget loses its own oldest photos. When the whole store is over a limit, sessions that have
never used a photo (uploaded, never edited: what a flood of uploads is made of) lose theirs
first; among those, or among the used ones once none is left, the least recently used session
goes first, and over the byte budget the heaviest. The newest photo of a session is never
evicted by that session's own budget, so a single large photo still works; a photo nobody has
touched for `StoreLimits.idle_seconds` is freed.
"""

import itertools
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class HasSize(Protocol):
    @property
    def nbytes(self) -> int: ...


Prepared = TypeVar("Prepared", bound=HasSize)


@dataclass(frozen=True)
class StoreLimits:
    """Full-resolution photos are kept for the export: one 50-megapixel photo holds ~160 MB with
    its preview, so a session's budget fits one such photo, and the store's fits three sessions
    of them. What the whole process needs beside them is measured in BENCHMARKS.md and
    `bench/hostile.py`."""

    photos: int = 64
    bytes: int = 768 * 2**20
    photos_per_session: int = 8
    bytes_per_session: int = 192 * 2**20
    idle_seconds: float = 1800.0


ID_CHARS = 24
"""Characters of a photo id (18 random bytes, URL-safe base64): what an input slot may carry."""


class PhotoNotLoaded(ValueError):
    """The id is unknown, evicted, or another session's: all look the same to the caller."""

    def __init__(self) -> None:
        super().__init__("This photo is no longer loaded; upload it again.")


@dataclass
class _Entry(Generic[Prepared]):
    session: str
    content: str
    value: Prepared
    loaded: int  # when the session last loaded it (`find` or `add`), in load order
    touched: float  # when it was last loaded or read (time.monotonic)
    used: bool = False  # read back after it was added (an edit, an export)


class PhotoStore(Generic[Prepared]):
    """Thread-safe store of prepared photos keyed by (session, photo id)."""

    def __init__(self, limits: StoreLimits | None = None):
        self.limits = limits or StoreLimits()
        self._entries: OrderedDict[str, _Entry[Prepared]] = OrderedDict()  # oldest first
        self._loads = itertools.count()
        self._shows_none: dict[str, int] = {}  # session → the load count when its page was emptied
        self._lock = threading.Lock()

    def find(self, session: str, content: str) -> tuple[str, Prepared] | None:
        """The id and value this session already has for this content (refreshed), or None."""
        with self._lock:
            for photo_id, entry in self._entries.items():
                if entry.session == session and entry.content == content:
                    self._entries.move_to_end(photo_id)
                    entry.loaded, entry.touched = next(self._loads), time.monotonic()
                    return photo_id, entry.value
        return None

    def shared(self, content: str) -> Prepared | None:
        """Another session's prepared value for the same content, to reuse its encoding."""
        with self._lock:
            return next((e.value for e in self._entries.values() if e.content == content), None)

    def add(self, session: str, content: str, value: Prepared) -> str:
        """Keep `value` for `session`; return its new id. Evicts as the limits require."""
        photo_id = secrets.token_urlsafe(ID_CHARS * 3 // 4)
        with self._lock:
            entry = _Entry(session, content, value, next(self._loads), time.monotonic())
            self._entries[photo_id] = entry
            self._evict(session, keep=photo_id)
        return photo_id

    def get(self, session: str, photo_id: str) -> Prepared:
        with self._lock:
            entry = self._entries.get(photo_id)
            if entry is None or entry.session != session:
                raise PhotoNotLoaded()
            self._entries.move_to_end(photo_id)
            entry.touched, entry.used = time.monotonic(), True
            return entry.value

    def holds(self, session: str, photo_id: str) -> bool:
        """Whether `get` would answer (without counting as a use)."""
        with self._lock:
            entry = self._entries.get(photo_id)
            return entry is not None and entry.session == session

    def latest(self, session: str) -> str | None:
        """The id of the photo this session loaded last (its page shows that one), or None:
        also when its page was emptied since (`show_none`: a refused upload)."""
        with self._lock:
            mine = [(e.loaded, i) for i, e in self._entries.items() if e.session == session]
            emptied = self._shows_none.get(session, -1)
        loaded, photo_id = max(mine) if mine else (-1, None)
        return photo_id if loaded > emptied else None

    def load_mark(self) -> int:
        """Now, in the store's load order: `shown_since` tells later what came after."""
        with self._lock:
            return next(self._loads)

    def shown_since(self, session: str, mark: int) -> set[str | None]:
        """What `session`'s page was given after `mark`: the ids of the photos it loaded (added,
        or found again), and None if its page was emptied (`show_none`)."""
        with self._lock:
            ids = {i for i, e in self._entries.items() if e.session == session and e.loaded > mark}
            emptied = self._shows_none.get(session, -1) > mark
        return ids | {None} if emptied else ids

    def discard(self, session: str, photo_id: str) -> None:
        """Let the session's photo `photo_id` go now (no error if it holds none by that id)."""
        with self._lock:
            entry = self._entries.get(photo_id)
            if entry is not None and entry.session == session:
                del self._entries[photo_id]

    def show_none(self, session: str) -> None:
        """This session's page shows no photo now (its upload was refused): work still queued
        for the photo it showed before must not put that photo back."""
        with self._lock:
            self._shows_none[session] = next(self._loads)
            while len(self._shows_none) > 16 * self.limits.photos:  # bounded: one int a session
                del self._shows_none[next(iter(self._shows_none))]

    def __len__(self) -> int:
        return len(self._entries)

    def held_bytes(self, session: str | None = None) -> int:
        """Bytes held by one session (shared values counted in full), or by the whole store
        (each shared value counted once)."""
        with self._lock:
            return self._bytes(session)

    def _bytes(self, session: str | None) -> int:
        if session is not None:
            return sum(e.value.nbytes for e in self._entries.values() if e.session == session)
        distinct = {e.content: e.value.nbytes for e in self._entries.values()}
        return sum(distinct.values())

    def _evict(self, session: str, keep: str) -> None:
        """Drop entries until the limits hold, never `keep` (the photo just added)."""
        limits = self.limits

        def oldest(of_session: str) -> str | None:
            ids = (i for i, e in self._entries.items() if e.session == of_session and i != keep)
            return next(ids, None)

        while (
            self._count(session) > limits.photos_per_session
            or self._bytes(session) > limits.bytes_per_session
        ) and (victim := oldest(session)):
            del self._entries[victim]
        idle = time.monotonic() - limits.idle_seconds
        for photo_id in [i for i, e in self._entries.items() if e.touched < idle and i != keep]:
            del self._entries[photo_id]
        while (over_bytes := self._bytes(None) > limits.bytes) or len(
            self._entries
        ) > limits.photos:
            others = {e.session for i, e in self._entries.items() if i != keep}
            if not others:
                return
            victim = min(others, key=lambda s: self._eviction_order(s, over_bytes))
            del self._entries[oldest(victim)]

    def _eviction_order(self, session: str, over_bytes: bool) -> tuple:
        """Sessions that never used a photo first, then (over the byte budget) the heaviest,
        then the least recently used."""
        mine = [e for e in self._entries.values() if e.session == session]
        used = any(e.used for e in mine)
        weight = -sum(e.value.nbytes for e in mine) if over_bytes else 0
        return used, weight, max(e.touched for e in mine)

    def _count(self, session: str) -> int:
        return sum(e.session == session for e in self._entries.values())
