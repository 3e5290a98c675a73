"""The loader waits for Milvus to index what it imported (loader.importer.wait_indexed), against a fake catalog."""

from __future__ import annotations

import logging

from loader.importer import wait_indexed


class Building:
    """A collection whose index builder reports the next (indexed, pending, total) at each call."""

    collection = "c"

    def __init__(self, reports: list[tuple[int, int, int]]):
        self.reports = list(reports)
        self.calls = 0

    def index_progress(self) -> tuple[int, int, int]:
        self.calls += 1
        return self.reports[min(self.calls, len(self.reports)) - 1]


def test_waits_until_every_row_is_indexed():
    cat = Building([(0, 100, 300), (100, 200, 300), (200, 100, 300), (300, 0, 300), (300, 0, 300)])
    assert wait_indexed(cat, retry_seconds=0, poll_s=0)
    assert cat.calls == 4  # stopped at the first report with nothing pending and every row indexed


def test_an_indexed_collection_returns_at_once():
    cat = Building([(300, 0, 300)])
    assert wait_indexed(cat, retry_seconds=0, poll_s=0) and cat.calls == 1


def test_rows_pending_count_even_when_indexed_rows_reach_the_total():
    # A compaction's new segment: every row counted as indexed once, but a build still queued.
    cat = Building([(300, 50, 300), (300, 0, 300)])
    assert wait_indexed(cat, retry_seconds=0, poll_s=0) and cat.calls == 2


def test_gives_up_when_the_index_stalls(caplog):
    cat = Building([(100, 200, 300)])
    with caplog.at_level(logging.WARNING):
        assert not wait_indexed(cat, retry_seconds=0, stall_s=0.05, poll_s=0.01)
    assert "100 of 300 rows" in caplog.text and "not waiting longer" in caplog.text


def test_a_drop_in_indexed_rows_is_waited_through():
    # A compaction merges indexed segments into one that is built again: indexed rows fall, then recover.
    cat = Building([(200, 100, 300), (150, 150, 300), (0, 300, 300), (300, 0, 300)])
    assert wait_indexed(cat, retry_seconds=0, poll_s=0) and cat.calls == 4


class Importing(Building):
    """A collection the import just filled: records whether it was loaded before its rows were indexed."""

    def __init__(self, reports):
        super().__init__(reports)
        self.events: list[str] = []

    def build_index(self, index) -> None:
        self.events.append("build")

    def index_progress(self) -> tuple[int, int, int]:
        report = super().index_progress()
        self.events.append("indexed" if not report[1] and report[0] >= report[2] else "indexing")
        return report

    def load(self) -> None:
        self.events.append("load")


def test_the_collection_is_loaded_only_once_its_rows_are_indexed():
    # Loaded earlier, the query node would hold every imported row raw until its segment is indexed.
    from catalog import IndexSpec
    from loader.importer import finish_collection

    cat = Importing([(0, 300, 300), (150, 150, 300), (300, 0, 300)])
    finish_collection(cat, IndexSpec("IVF_SQ8"), retry_seconds=0)
    assert cat.events == ["build", "indexing", "indexing", "indexed", "load"]
