"""Progress of a build run as people read it: on stderr, one line at a time, every line naming its image.

A long step that prints nothing for a while (a compile, an export, a push) gets a heartbeat line, so a CI log
never looks hung; on GitHub Actions the build steps of each image fold into a `::group::`, so the log of a
long release reads as one line per image until opened.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

Printer = Callable[[str], None]


def to_stderr(text: str) -> None:
    """Progress goes to stderr: stdout carries only data (a dry run's commands, --json)."""
    print(text, file=sys.stderr, flush=True)


def on_github_actions(env: Mapping[str, str] | None = None) -> bool:
    return (os.environ if env is None else env).get("GITHUB_ACTIONS") == "true"


class Progress:
    """Thread-safe progress lines; `step()` for a long step of one image (heartbeat, fold group).

    `live`: a step's lines are shown as they come (one image at a time); otherwise, when folding, they are
    kept and shown as one group when the step ends, so the groups of parallel builds never interleave.
    """

    def __init__(self, write: Printer = to_stderr, *, fold: bool = False, live: bool = True,
                 heartbeat_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._lock = threading.Lock()
        self.fold = fold
        self.live = live
        self.heartbeat_s = heartbeat_s
        self.clock = clock

    def say(self, text: str) -> None:
        with self._lock:
            self._write(text)

    @contextmanager
    def step(self, image: str, doing: str, *, group: str | None = None) -> Iterator[Step]:
        """A long step of `image` ("building", "verifying", ...): a heartbeat `<image>: still <doing> (N s)`
        after every `heartbeat_s` without a line; with `group` (a title) and folding on, its lines in a group."""
        step = Step(self, image, doing, group if self.fold else None)
        step.start()
        try:
            yield step
        finally:
            step.stop()


class Step:
    """One running step of one image; see Progress.step."""

    def __init__(self, progress: Progress, image: str, doing: str, group: str | None) -> None:
        self.progress = progress
        self.image = image
        self.doing = doing
        self.group = group
        self.kept: list[str] | None = None if group is None or progress.live else []
        self.started = progress.clock()
        self.last = self.started
        self._done = threading.Event()
        self._beat: threading.Thread | None = None

    def start(self) -> None:
        if self.group is not None and self.kept is None:
            self.progress.say(f"::group::{self.group}")
        if self.progress.heartbeat_s > 0:
            self._beat = threading.Thread(target=self._heartbeat, name=f"heartbeat {self.image}", daemon=True)
            self._beat.start()

    def line(self, text: str) -> None:
        """A line of the step, shown as `<image>: <text>`."""
        self.last = self.progress.clock()
        if self.kept is not None:
            with self.progress._lock:
                self.kept.append(f"{self.image}: {text}")
            return
        self.progress.say(f"{self.image}: {text}")

    def stop(self) -> None:
        self._done.set()
        if self._beat is not None:
            self._beat.join()
        if self.group is None:
            return
        if self.kept is None:
            self.progress.say("::endgroup::")
            return
        with self.progress._lock:
            for text in (f"::group::{self.group}", *self.kept, "::endgroup::"):
                self.progress._write(text)

    def _heartbeat(self) -> None:
        every = self.progress.heartbeat_s
        while not self._done.wait(max(self.last + every - self.progress.clock(), 0.001)):
            now = self.progress.clock()
            if now - self.last >= every:
                self.last = now
                self.progress.say(f"{self.image}: still {self.doing} ({now - self.started:.0f} s)")
