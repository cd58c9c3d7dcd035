"""Data sets of the DeepAFx tasks, built locally from Debian-packaged audio (nothing downloaded).

* :mod:`training.data.builder` — what every task shares: sources, splits, the cached build,
  loaders and window samplers (re-exported here);
* :mod:`training.data.mastering`, :mod:`training.data.distortion`, :mod:`training.data.nonspeech`
  — one module per task: its sources and how it makes an (input, target) pair.

``python -m training.data TASK`` builds a task's set once into its cache.
"""

from training.data.builder import (
    BUILDERS,
    SPLITS,
    DataError,
    Source,
    Track,
    Window,
    WindowSampler,
    build_task,
    iter_windows,
    load_manifest,
    load_tracks,
    read_source,
    resolve_cache_dir,
    sources_from_files,
    split_sources,
    summary,
)

__all__ = [
    "BUILDERS",
    "SPLITS",
    "DataError",
    "Source",
    "Track",
    "Window",
    "WindowSampler",
    "build_task",
    "iter_windows",
    "load_manifest",
    "load_tracks",
    "read_source",
    "resolve_cache_dir",
    "sources_from_files",
    "split_sources",
    "summary",
]
