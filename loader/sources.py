"""Where `extract --engine ray` finds its images: a folder, a text file listing paths, or an S3 prefix.

`open_source(SOURCE, s3)` says which it is and `Source.names()` lists the images (sorted for folders and
prefixes, file order for lists). An image's *name* is what goes into the HDF5 names and the catalogue:
the path relative to the folder, the line of the list as written, or the key relative to the prefix.
`Source.read(name)` returns the bytes; it runs inside the job's read tasks, so a `Source` is small and
picklable (the S3 client is made where it is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loader.extract import IMAGE_SUFFIXES, list_images
from loader.object_store import S3Target


class SourceError(ValueError):
    """SOURCE cannot be listed; the message says what to fix."""


@dataclass(frozen=True)
class FolderSource:
    """Every image file under a folder (hidden files skipped), named by their relative posix path."""

    root: str

    def describe(self) -> str:
        return f"folder {self.root}"

    def names(self) -> list[str]:
        return list_images(self.root)

    def read(self, name: str) -> bytes:
        return (Path(self.root) / name).read_bytes()


@dataclass(frozen=True)
class ListSource:
    """A text file of image paths, one a line (blank lines and `#` comments skipped; duplicates once).

    Relative paths are relative to the list file's folder; the name is the line as written.
    """

    path: str

    def describe(self) -> str:
        return f"list {self.path}"

    def names(self) -> list[str]:
        try:
            lines = Path(self.path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{self.path}: cannot read the list of images ({exc}); pass a UTF-8 text file "
                              "with one image path a line") from None
        wanted = (line.strip() for line in lines)
        return list(dict.fromkeys(n for n in wanted if n and not n.startswith("#")))

    def read(self, name: str) -> bytes:
        return (Path(self.path).parent / name).read_bytes()


@dataclass(frozen=True)
class S3Source:
    """Every object under `s3://bucket/prefix` whose key ends in an image suffix, named relative to the prefix."""

    target: S3Target  # endpoint and credentials (the loader's S3_* settings); bucket and prefix from SOURCE

    def describe(self) -> str:
        return f"s3://{self.target.bucket}/{self.target.prefix} at {self.target.endpoint}"

    def _client(self):
        from minio import Minio

        t = self.target
        return Minio(t.endpoint, access_key=t.access_key, secret_key=t.secret_key, secure=t.secure)

    def _prefix(self) -> str:
        prefix = self.target.prefix.strip("/")
        return f"{prefix}/" if prefix else ""

    def names(self) -> list[str]:
        prefix = self._prefix()
        try:
            client = self._client()
            if not client.bucket_exists(self.target.bucket):
                raise SourceError(f"bucket {self.target.bucket!r} not found at {self.target.endpoint}: check SOURCE")
            keys = [o.object_name for o in client.list_objects(self.target.bucket, prefix=prefix, recursive=True)]
        except SourceError:
            raise
        except Exception as exc:  # connection refused, bad credentials, TLS mismatch
            raise SourceError(f"cannot list {self.describe()}: {exc}; check --s3-endpoint and the credentials "
                              "(S3_ACCESS_KEY / S3_SECRET_KEY)") from exc
        return sorted(k[len(prefix):] for k in keys
                      if Path(k).suffix.lower() in IMAGE_SUFFIXES and not k.endswith("/"))

    def read(self, name: str) -> bytes:
        response = self._client().get_object(self.target.bucket, self._prefix() + name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()


Source = FolderSource | ListSource | S3Source


def open_source(source: str, s3: S3Target | None = None) -> Source:
    """SOURCE as given on the command line -> the Source that lists it; SourceError says what to fix."""
    if source.startswith("s3://"):
        bucket, _, prefix = source[len("s3://"):].partition("/")
        if not bucket:
            raise SourceError(f"{source}: no bucket; write s3://BUCKET/PREFIX")
        if s3 is None:
            raise SourceError(f"{source} is on object storage: give its endpoint with --s3-endpoint (env S3_ENDPOINT)")
        return S3Source(S3Target(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key,
                                 bucket=bucket, prefix=prefix, secure=s3.secure))
    path = Path(source)
    if path.is_dir():
        return FolderSource(str(path.resolve()))
    if path.is_file():
        return ListSource(str(path.resolve()))
    raise SourceError(f"{source}: no such folder or file; pass a folder of images, a text file listing image "
                      "paths, or s3://BUCKET/PREFIX")
