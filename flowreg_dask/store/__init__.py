"""Output stores: OME-Zarr 0.5 corrected movie, flow, masks, reference and statistics.

* :mod:`.layout` names every array and attribute (the single source of truth for the layout);
* :mod:`.writer` writes a run's store (:class:`~.writer.CorrectedStore`: atomic per-chunk writes,
  resume, safe overwrite); :mod:`.lock` keeps it to one writer;
* :mod:`.reader` opens a finished store (:func:`~.reader.open_result`,
  :func:`~.reader.store_status`);
* :mod:`.export` converts a store to HDF5, TIFF, MAT, suite2p, CaImAn and NumPy files.
"""
