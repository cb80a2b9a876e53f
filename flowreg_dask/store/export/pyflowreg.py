"""pyflowreg's side files of a run, written from a complete corrected store.

pyflowreg's ``compensate_recording`` writes, next to its output file in ``output_path``:

* ``w.h5`` (``save_w``): datasets ``u`` and ``v``, float32 (T, H, W);
* ``idx.hdf`` (``save_valid_idx``): the in-bounds masks, uint8 0/255 (T, H, W). pyflowreg meant the
  dataset to be called ``idx`` but, through a misspelt keyword, names it ``ch1``; this file has
  ``idx`` and a hard link ``ch1`` to the same data, so scripts written for either name read it;
* ``reference_frame.npy`` (``save_meta_info``): the raw reference (H, W, C) float32;
* ``statistics.npz`` (``save_meta_info``): ``mean_disp``, ``max_disp``, ``mean_div``,
  ``mean_translation``, each (T,).

Each file is written under a temporary name and renamed into place once complete.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from ..._constants import STAT_NAMES
from ...errors import InvalidInputError, OutputExistsError
from ._staging import _Staging

__all__ = ["export_pyflowreg_files", "PYFLOWREG_FILES"]

#: The side files and the option that asks for each.
PYFLOWREG_FILES = {
    "w.h5": "save_w",
    "idx.hdf": "save_valid_idx",
    "reference_frame.npy": "save_meta_info",
    "statistics.npz": "save_meta_info",
}


def export_pyflowreg_files(
    store: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    save_w: bool,
    save_valid: bool,
    save_meta: bool,
    overwrite: bool = False,
) -> list[Path]:
    """Write pyflowreg's side files of the run in ``store`` into ``folder``.

    Parameters
    ----------
    store : path
        A complete output store (its flows must have been saved for ``save_w``, its masks for
        ``save_valid``).
    folder : path
        Destination folder (created when missing).
    save_w, save_valid, save_meta : bool
        Which files to write (see the module docstring).
    overwrite : bool
        Replace existing files (once the new ones are complete).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    import h5py

    from ..reader import open_result

    ds = open_result(store)
    folder = Path(folder)
    wanted = {
        "w.h5": save_w,
        "idx.hdf": save_valid,
        "reference_frame.npy": save_meta,
        "statistics.npz": save_meta,
    }
    names = [name for name, on in wanted.items() if on]
    if save_w and "flow" not in ds:
        raise InvalidInputError(f"{os.fspath(store)!r}: holds no flow fields (save_w was off)")
    if save_valid and "valid" not in ds:
        raise InvalidInputError(f"{os.fspath(store)!r}: holds no valid masks")
    if not overwrite:
        existing = [str(folder / n) for n in names if (folder / n).exists()]
        if existing:
            raise OutputExistsError(
                f"{', '.join(existing)} exist(s); pass overwrite=True to replace them"
            )
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = ds.sizes["t"], ds.sizes["y"], ds.sizes["x"]
    bounds = _bounds(ds)
    staging = _Staging()
    try:
        if save_w:
            with h5py.File(staging.temp(folder / "w.h5"), "w") as f:
                u = f.create_dataset("u", (n, h, w), np.float32, chunks=(1, h, w))
                v = f.create_dataset("v", (n, h, w), np.float32, chunks=(1, h, w))
                for start, stop in bounds:
                    flow = ds["flow"][start:stop].values
                    u[start:stop] = flow[..., 0]
                    v[start:stop] = flow[..., 1]
        if save_valid:
            with h5py.File(staging.temp(folder / "idx.hdf"), "w") as f:
                idx = f.create_dataset("idx", (n, h, w), np.uint8, chunks=(1, h, w))
                for start, stop in bounds:
                    idx[start:stop] = ds["valid"][start:stop].values.astype(np.uint8) * 255
                f["ch1"] = idx  # pyflowreg's actual dataset name
        if save_meta:
            with open(staging.temp(folder / "reference_frame.npy"), "wb") as fh:
                np.save(fh, ds["reference"].values.astype(np.float32))
            with open(staging.temp(folder / "statistics.npz"), "wb") as fh:
                np.savez(fh, **{k: ds[k].values for k in STAT_NAMES})
        staging.commit(overwrite)
    except BaseException:
        staging.discard()
        raise
    finally:
        with contextlib.suppress(Exception):
            ds.close()
    return [folder / name for name in names]


def _bounds(ds) -> list[tuple[int, int]]:
    """Time chunks of the store's corrected movie."""
    from ..._constants import bounds_from_chunks

    chunks = ds["corrected"].chunks
    if chunks is None:
        return [(0, ds.sizes["t"])]
    return bounds_from_chunks(chunks[0])
