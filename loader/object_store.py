"""Bulk mode on object storage: staged files are uploaded into Milvus's bucket before their import job
starts (the minio SDK, as pymilvus's RemoteBulkWriter does), and deleted once the job completed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from loader.bulk_files import BulkError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Target:
    """Milvus's object store: staged files are uploaded here before their import job starts."""

    endpoint: str  # host:port
    access_key: str
    secret_key: str
    bucket: str = "a-bucket"  # Milvus's default minio.bucketName
    prefix: str = "bulk-import"
    secure: bool = False


def object_key(prefix: str, root: Path, path: Path) -> str:
    """The object key of a staged file: prefix/<import>/<job>/<file>, the import being the staging folder
    named after the collection and the import's state, so concurrent imports never share a key."""
    return "/".join([prefix.strip("/"), *path.relative_to(root).parts]).lstrip("/")


class ObjectStore:
    """Uploads staged job files into Milvus's bucket and deletes them again."""

    def __init__(self, target: S3Target):
        """Connect and check the bucket: a bad endpoint or bucket fails before anything is staged."""
        from minio import Minio

        self.target = target
        self.client = Minio(target.endpoint, access_key=target.access_key, secret_key=target.secret_key,
                            secure=target.secure)
        try:
            found = self.client.bucket_exists(target.bucket)
        except Exception as exc:  # connection refused, bad credentials, TLS mismatch
            raise BulkError(f"cannot use object storage at {target.endpoint}: {exc}; check --s3-endpoint and "
                            "the credentials (S3_ACCESS_KEY / S3_SECRET_KEY)") from exc
        if not found:
            raise BulkError(f"bucket {target.bucket!r} not found at {target.endpoint}: give Milvus's own bucket "
                            "(its minio.bucketName, default a-bucket) with --s3-bucket")

    def upload(self, root: Path, paths: list[Path]) -> list[str]:
        """Put the files into the bucket; returns their keys (what the import job reads)."""
        keys = []
        for path in paths:
            key = object_key(self.target.prefix, root, path)
            try:
                self.client.fput_object(self.target.bucket, key, str(path))
            except Exception as exc:
                raise BulkError(f"upload of {path.name} to {self.target.endpoint} failed: {exc}") from exc
            keys.append(key)
        return keys

    def remove(self, keys: list[str]) -> None:
        """Delete objects; one that cannot be deleted is logged (a leftover object is harmless)."""
        for key in keys:
            try:
                self.client.remove_object(self.target.bucket, key)
            except Exception as exc:
                log.warning("could not delete %s from bucket %s: %s", key, self.target.bucket, exc)
