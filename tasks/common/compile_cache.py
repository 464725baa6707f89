"""Compiled steps kept between runs: JAX's persistent compilation cache for ``chiral``.

The first call of a training step traces and compiles it (seconds at the demo's size,
about 10 s for the paper's 243-frame lifting model on a 2-core CPU). A second run of
the same model and shapes (a resumed run, another seed, a rerun) loads the compiled
program from disk instead. JAX keys each entry by the program, the compile options,
the device and the jax/XLA versions, so a stale entry is never used.

Where (first match):

* ``CHIRAL_COMPILE_CACHE=off`` (or ``0``, ``false``, ``no``): no cache at all, not even
  one the user configured for JAX;
* a cache the user already gave JAX (``JAX_COMPILATION_CACHE_DIR``, a folder or a
  remote URL): that one, with the user's JAX settings as they are;
* ``CHIRAL_COMPILE_CACHE=<folder>``: that folder;
* else ``$XDG_CACHE_HOME/chiral_jax/jax`` (default ``~/.cache/chiral_jax/jax``).

In a folder of ours, JAX keeps compilations that took at least 0.1 s (its default is
1 s; ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` overrides), so that evaluation and
initialisation are kept too: at the demo's size a second ``chiral lifting train
--max-steps 1`` took 6.7 s against 11.5 s for the first (2.4 s of it importing), and
8.4 s with the 1 s default. With the ``filelock`` package (the ``tasks`` extra installs
it) the folder is kept under 1 GiB, least recently used entries going first
(``JAX_COMPILATION_CACHE_MAX_SIZE`` overrides). A folder that cannot be created or
written gives one warning and a run without the cache.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import jax

ENV = "CHIRAL_COMPILE_CACHE"
_OFF = {"off", "0", "false", "no"}
MIN_COMPILE_SECONDS = 0.1
MAX_BYTES = 2**30


def cache_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """The cache ``chiral`` uses, by the rules above: a folder or a URL, None when off."""
    setting = _setting(environ)
    if setting.lower() in _OFF:
        return None
    return jax.config.jax_compilation_cache_dir or str(_own_folder(setting, environ))


def _setting(environ: Mapping[str, str]) -> str:
    return environ.get(ENV, "").strip()


def _own_folder(setting: str, environ: Mapping[str, str]) -> Path:
    if setting:
        return Path(setting).expanduser()
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG rule
    return base / "chiral_jax" / "jax"


def enable(environ: Mapping[str, str] = os.environ) -> str | None:
    """Configure JAX's persistent compilation cache by the rules above; returns the cache
    in use, or None where it is off or its folder is unusable (with a warning)."""
    try:
        chosen = cache_dir(environ)
        if chosen is None:
            jax.config.update("jax_enable_compilation_cache", False)
            return None
        if chosen == jax.config.jax_compilation_cache_dir:
            return chosen  # the user's: their settings stand
        folder = Path(chosen)
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{folder}: not writable")
    except (OSError, RuntimeError) as err:  # RuntimeError: no home folder
        warnings.warn(
            f"no compilation cache ({err}); set {ENV} to another folder, or to off",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", chosen)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in environ and importlib.util.find_spec(
        "filelock"
    ):
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return chosen
