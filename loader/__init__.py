"""Bulk loader: HDF5 feature files and image folders into the Milvus catalogue.

- `loader.hdf5`: the classic HDF5 layout (streaming reader with auto-detection; resumable writer).
- `loader.validate`: row checks, skip reasons, normalisation.
- `loader.importer`: `import_h5` (insert mode: batched upserts, checkpointed).
- `loader.bulk`: bulk mode (Parquet files + Milvus import jobs, tracked and retried).
- `loader.extract`: images -> HDF5 through the extractor service, several requests in flight.
- `loader.cli`: the `python -m loader` command line.
"""
