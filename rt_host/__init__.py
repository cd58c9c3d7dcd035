"""deepafx-rt: neural networks that drive real LV2 plugins, offline and live."""

import hashlib
import os
import shutil
import sys
from pathlib import Path

__version__ = "0.1.0"

NUMBA_CACHES_KEPT = 3


def _numba_cache_dir() -> None:
    """Give numba's on-disk cache a folder per version of this package's source.

    The native code is compiled with ``cache=True`` and calls across modules
    (the JACK callback → the block → the steering kernel → the mapping kernel),
    but numba only re-compiles a cached function when *its own* file changes:
    after an edit of the kernel, the callback would run the old one. A cache
    folder keyed by a hash of every source file here cannot go stale (~1 ms to
    hash). Skipped when the user chose a cache folder, or numba is loaded already.
    """
    if "NUMBA_CACHE_DIR" in os.environ or "numba" in sys.modules:
        return
    digest = hashlib.sha1()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepafx-rt" / "numba"
    here = root / digest.hexdigest()[:16]
    try:
        here.mkdir(parents=True, exist_ok=True)
        older = sorted((p for p in root.iterdir() if p != here), key=lambda p: p.stat().st_mtime)
        for stale in older[: max(0, len(older) - (NUMBA_CACHES_KEPT - 1))]:
            shutil.rmtree(stale, ignore_errors=True)
        os.utime(here)
    except OSError:
        return  # an unwritable home: numba caches beside the sources as usual
    os.environ["NUMBA_CACHE_DIR"] = str(here)


_numba_cache_dir()
