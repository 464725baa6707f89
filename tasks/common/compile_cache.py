"""Compiled steps kept between runs: JAX's persistent compilation cache for ``chiral``.

The first call of a training step traces and compiles it (seconds at the demo's size,
about 10 s for the paper's 243-frame lifting model on a 2-core CPU). A second run of
the same model and shapes (a resumed run, another seed, a rerun) loads the compiled
program from disk instead. JAX keys each entry by the program, the compile options,
the device and the jax/XLA versions, so a stale entry is never used.

Where (first match):

* ``CHIRAL_COMPILE_CACHE=off`` (or ``0``, ``false``, ``no``): no cache;
* a cache folder the user already gave JAX (``JAX_COMPILATION_CACHE_DIR``): that one;
* ``CHIRAL_COMPILE_CACHE=<folder>``: that folder;
* else ``$XDG_CACHE_HOME/chiral_jax/jax`` (default ``~/.cache/chiral_jax/jax``).

A folder that cannot be created gives a warning and a run without the cache. JAX keeps
only compilations that took at least ``jax_persistent_cache_min_compile_time_secs``;
``chiral`` lowers JAX's 1 s default to 0.1 s (unless ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``
is set), so that evaluation and initialisation are kept too: at the demo's size a
second ``chiral lifting train --max-steps 1`` took 6.7 s against 11.5 s for the first
(2.4 s of it importing), against 8.4 s with the 1 s default. The folder is kept under
1 GiB (least recently used entries go first) unless ``JAX_COMPILATION_CACHE_MAX_SIZE``
says otherwise.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import jax

ENV = "CHIRAL_COMPILE_CACHE"
_OFF = {"off", "0", "false", "no"}
MIN_COMPILE_SECONDS = 0.1
MAX_BYTES = 2**30


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The folder ``chiral`` caches compiled programs in, by the rules above (None: off)."""
    setting = environ.get(ENV, "").strip()
    if setting.lower() in _OFF:
        return None
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    if setting:
        return Path(setting).expanduser()
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chiral_jax" / "jax"


def enable(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir`; returns the folder,
    or None where the cache is off or its folder cannot be made (with a warning)."""
    folder = cache_dir(environ)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(
            f"no compilation cache ({folder}: {err.strerror or err}); set {ENV} to another "
            f"folder, or to off",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Our defaults, where the user set none: keep 0.1 s compilations, at most 1 GiB (JAX
    # then deletes the least recently used entries).
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in environ:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
