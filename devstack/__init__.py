"""The local stack behind `make run`: Milvus, extractor and search service as real processes."""
