"""Child processes that exit when their parent dies.

The live host runs its model controller and its MIDI receiver in child
processes. Their loops only watch a stop flag in shared memory: if the host is
killed (SIGKILL, the OOM killer, a crash in a plugin), nobody sets the flag,
and the children would run on for ever, re-parented to init, still holding a
JACK client (its MIDI port stays in the graph) and keeping the
``multiprocessing`` resource tracker alive. A child calls
:func:`die_with_parent` first thing::

    def _child_main(...):
        die_with_parent()
        ...

Two mechanisms, because neither is enough alone:

1. ``prctl(PR_SET_PDEATHSIG)`` (Linux): the kernel signals the child the moment
   its parent goes, even while the child is busy in C code. But "parent" here
   is the parent *thread* — the thread that started the child — not the
   process: a child started from a helper thread is signalled when that thread
   ends, although the host lives on (the kernel then hands the child to another
   thread of the host and signals again when that one ends). So the signal is a
   private real-time one whose handler first checks ``os.getppid()``:
   re-parented to another process means the parent really died; otherwise only
   a thread ended, and the signal is ignored.
2. A watchdog thread polls ``os.getppid()`` every :data:`POLL_S`. It is what
   works where ``prctl`` does not (other systems, a failed call) or where no
   handler can be installed (:func:`die_with_parent` called from a thread other
   than the main one), and it backs up the signal if that is ever missed.

Either way the child leaves through ``SystemExit`` raised in its main thread, so
its ``finally`` blocks still close the JACK client and the shared memory; if the
main thread cannot get there within :data:`GRACE_S` (stuck in a C call), the
watchdog ends the process with ``os._exit``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time

POLL_S = 0.25  # how often the watchdog looks at the parent
GRACE_S = 2.0  # how long the main thread gets to clean up before the process is ended outright
EXIT_CODE = 3  # the status of a child that left because its parent died
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_DIED = signal.SIGRTMIN + 5 if hasattr(signal, "SIGRTMIN") else None  # private: nobody else sends it

_armed = False
_leaving = False  # SystemExit is on its way: a second signal must not interrupt the cleanup


def die_with_parent(*, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> None:
    """Make this process exit when its parent process dies (see the module docstring).

    Call it first thing in the child, from its main thread (from another
    thread only the watchdog is armed, and it ends the process without
    cleanup). Idempotent. If the parent is already gone when it is called (a
    ``multiprocessing`` child re-parented before it got here), the process exits
    at once.
    """
    global _armed
    if _armed:
        return
    _armed = True
    parent = os.getppid()
    spawner = multiprocessing.parent_process()
    if spawner is not None and spawner.pid != parent and not _alive(spawner.pid):
        _leave(parent, grace_s)  # re-parented already: the parent died before we got here
    handled = threading.current_thread() is threading.main_thread() and PARENT_DIED is not None
    if handled:
        signal.signal(PARENT_DIED, lambda _sig, _frame: _on_signal(parent, grace_s))
        _set_pdeathsig(PARENT_DIED)
    if os.getppid() != parent:  # died between getppid() and prctl(): no signal will come
        _leave(parent, grace_s)
    watchdog = threading.Thread(
        target=_watch, args=(parent, poll_s, grace_s, handled), name="lifeline", daemon=True
    )
    watchdog.start()


def _set_pdeathsig(signum: int) -> bool:
    """Ask the kernel for ``signum`` when the parent thread exits; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds that pid: ours is gone
        return False
    return True


def _on_signal(parent: int, grace_s: float) -> None:
    if _leaving or os.getppid() == parent:
        return  # only the thread that started us ended, not the parent process: the watchdog watches on
    _leave(parent, grace_s)


def _watch(parent: int, poll_s: float, grace_s: float, handled: bool) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    if _leaving:
        return  # the signal came first: the main thread is on its way out, _leave's timer backs it up
    if handled:
        # the main thread leaves through SystemExit (its finally blocks run) …
        signal.pthread_kill(threading.main_thread().ident, PARENT_DIED)
        time.sleep(grace_s)
    os._exit(EXIT_CODE)  # … or the process ends here if it could not


def _leave(parent: int, grace_s: float) -> None:
    """Exit from the main thread (cleanup runs); a timer ends the process if that stalls."""
    global _leaving
    _leaving = True
    name = multiprocessing.current_process().name
    print(f"deepafx-rt: {name} (pid {os.getpid()}) exits: its parent (pid {parent}) died", file=sys.stderr)
    timer = threading.Timer(grace_s, os._exit, args=(EXIT_CODE,))
    timer.daemon = True
    timer.start()
    raise SystemExit(EXIT_CODE)


def become_child(nice: int = 0) -> None:
    """First thing in a helper process of the live host (controller, MIDI, web): exit with the parent,
    and yield the CPU to it by ``nice``."""
    die_with_parent()
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass


def stop_child(proc, timeout: float = 5.0) -> None:
    """Wait for a helper process the host has asked to stop (its shared ``STOP`` flag); end it if it
    does not go within ``timeout``."""
    if proc is None or proc.pid is None:  # never started (e.g. its start failed): nothing to stop
        return
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join(1)
