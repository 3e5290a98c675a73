"""Bulk loader: HDF5 feature files and image folders into the Milvus catalogue.

- `loader.hdf5`: the classic HDF5 layout (streaming reader with auto-detection; resumable writer).
- `loader.validate`: row checks, skip reasons, normalisation.
- `loader.source`: what an import reads (layout, dimension, repeated names) and its checked chunks.
- `loader.options`: `ImportOptions`, what an import can be told.
- `loader.state`: the resume record, typed (bulk jobs and their states), saved atomically.
- `loader.importer`: `import_h5`, both modes' start and end, and insert mode (batched upserts, checkpointed).
- `loader.upsert`: the insert path's retried upsert (insert mode, and names bulk mode finds stored).
- `loader.bulk`: bulk mode, `BulkImport`: import jobs driven through their states, tracked and retried.
- `loader.bulk_files`: bulk mode's files (.npy columns by default, or Parquet) and where they are staged.
- `loader.object_store`: bulk mode on object storage (upload into Milvus's bucket).
- `loader.extract`: images -> HDF5 through the extractor service, several requests in flight.
- `loader.cli`: the `python -m loader` command line.

Milvus is reached only through `catalog` (import jobs: catalog.import_jobs; Milvus 2.3's quirks:
catalog.milvus23).
"""
