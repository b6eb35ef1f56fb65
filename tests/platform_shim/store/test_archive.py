"""The store's archive: entries by key, pages by tag, pruning, and an index rebuilt from the
segments whatever state a crash left it in."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from platform_shim.store import FileStore
from platform_shim.store.archive import SEGMENT_SPAN_MS, ArchiveEntry, FileArchive


def entry(n: int, *, at: int = 1000, tags: tuple[str, ...] = ("even",)) -> ArchiveEntry:
    return ArchiveEntry(f"k{n}", n, at, tags, orjson.dumps({"n": n}), orjson.dumps([{"step": n}]))


def tags_of(n: int) -> tuple[str, ...]:
    return ("even",) if n % 2 == 0 else ("odd",)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "arch"


def test_entries_read_back_by_key_and_are_added_once(folder: Path) -> None:
    archive = FileArchive(folder, writable=True)
    assert archive.add([entry(1), entry(2)]) == 2
    assert archive.add([entry(2), entry(3), entry(3)]) == 1  # k2 is there; k3 once
    assert archive.entry("k2") == ({"n": 2}, [{"step": 2}])
    assert archive.head("k3") == {"n": 3}
    assert archive.head("nope") is None and archive.entry("nope") is None
    assert archive.known(["k1", "k9", "k3"]) == {"k1", "k3"}
    assert archive.order_of("k3") == 3
    assert archive.count() == 3 and archive.count("even") == 3
    archive.close()
    reopened = FileArchive(folder, writable=True)
    assert sorted(key for key, _, _ in reopened) == ["k1", "k2", "k3"]
    assert reopened.count() == 3
    reopened.close()


def test_pages_are_newest_first_per_tag_and_continue_below_a_cursor(folder: Path) -> None:
    archive = FileArchive(folder, writable=True)
    archive.add([entry(n, tags=tags_of(n)) for n in range(1, 101)])
    page = archive.page("odd", None, 5)
    assert [order for order, _, _ in page] == [99, 97, 95, 93, 91]
    assert [key for _, key, _ in archive.page("odd", 91, 3)] == ["k89", "k87", "k85"]
    assert [order for order, _, _ in archive.page(None, 4, 10)] == [3, 2, 1]
    assert archive.page("none", None, 10) == []
    assert archive.page("even", None, 1)[0][2] == {"n": 100}
    assert archive.count("odd") == 50
    archive.close()


def test_bounds_past_sqlites_integers_mean_all(folder: Path) -> None:
    # Found by the HTTP fuzzer: GET /api/workflows/runs?limit=99999999999999999999999 was a 500.
    archive = FileArchive(folder, writable=True)
    archive.add([entry(n) for n in range(1, 4)])
    assert [key for _, key, _ in archive.page(None, None, 10**23)] == ["k3", "k2", "k1"]
    assert [key for _, key, _ in archive.page("even", 10**23, 10**23)] == ["k3", "k2", "k1"]
    assert archive.page(None, -(10**23), 10) == []
    archive.close()


def test_a_reader_sees_what_the_writer_committed(folder: Path) -> None:
    reader = FileArchive(folder, writable=False)
    assert reader.page(None, None, 10) == [] and reader.count() == 0  # nothing written yet
    writer = FileArchive(folder, writable=True)
    writer.add([entry(1), entry(2)])
    assert [key for _, key, _ in reader.page(None, None, 10)] == ["k2", "k1"]
    assert reader.count("even") == 2
    assert reader.entry("k1") == ({"n": 1}, [{"step": 1}])
    writer.close()
    reader.close()


def test_entries_the_index_missed_are_indexed_at_open_and_a_torn_one_is_cut(
    folder: Path,
) -> None:
    archive = FileArchive(folder, writable=True)
    archive.add([entry(1)])
    archive.close()
    # A crash after the append, before the index commit: two whole entries and a torn third.
    segment = folder / "000001.jsonl"
    head = orjson.dumps({"k": "k2", "o": 2, "a": 1000, "t": ["even"], "h": {"n": 2}})
    body = orjson.dumps({"k": "k2", "b": [{"step": 2}]})
    with segment.open("ab") as out:
        out.write(head + b"\n" + body + b"\n" + b'{"k": "k3", "o": 3')
    archive = FileArchive(folder, writable=True)
    assert archive.entry("k2") == ({"n": 2}, [{"step": 2}])
    assert archive.count() == 2
    assert segment.read_bytes().endswith(body + b"\n")
    archive.add([entry(3)])
    assert archive.entry("k3") == ({"n": 3}, [{"step": 3}])
    archive.close()


def test_a_lost_or_damaged_index_is_rebuilt_from_the_segments(folder: Path) -> None:
    archive = FileArchive(folder, writable=True)
    archive.add([entry(n, tags=tags_of(n)) for n in range(1, 11)])
    archive.close()
    (folder / "index.sqlite").write_bytes(b"this is not a database" * 100)
    rebuilt = FileArchive(folder, writable=True)
    assert rebuilt.count() == 10 and rebuilt.count("odd") == 5
    assert [key for _, key, _ in rebuilt.page("even", None, 2)] == ["k10", "k8"]
    rebuilt.close()
    for path in folder.glob("index.sqlite*"):
        path.unlink()
    rebuilt = FileArchive(folder, writable=True)
    assert rebuilt.entry("k7") == ({"n": 7}, [{"step": 7}])
    rebuilt.close()


def test_an_index_ahead_of_its_segment_is_rebuilt(folder: Path) -> None:
    archive = FileArchive(folder, writable=True)
    archive.add([entry(1), entry(2)])
    archive.close()
    segment = folder / "000001.jsonl"
    first = segment.read_bytes().split(b"\n")
    segment.write_bytes(b"\n".join(first[:2]) + b"\n")  # a power cut lost the second entry
    archive = FileArchive(folder, writable=True)
    assert archive.known(["k1", "k2"]) == {"k1"}
    assert archive.count() == 1
    archive.close()


def test_prune_forgets_old_entries_at_once_and_deletes_whole_old_segments(folder: Path) -> None:
    day = SEGMENT_SPAN_MS
    archive = FileArchive(folder, writable=True)
    archive.add([entry(1, at=0), entry(2, at=10)])
    archive.add([entry(3, at=2 * day)])  # more than a day later: a new segment
    archive.add([entry(4, at=2 * day + 5)])
    assert sorted(p.name for p in folder.glob("*.jsonl")) == ["000001.jsonl", "000002.jsonl"]
    assert archive.prune(5) == 1  # k1 only; its segment still holds k2
    assert archive.known(["k1", "k2"]) == {"k2"}
    assert (folder / "000001.jsonl").exists()
    assert archive.count() == 3 and archive.count("even") == 3
    assert archive.prune(2 * day + 1) == 2
    assert not (folder / "000001.jsonl").exists()
    assert archive.known(["k3", "k4"]) == {"k4"}
    assert (folder / "000002.jsonl").exists()  # the segment being written stays
    archive.close()


def test_the_file_store_opens_archives_in_its_folder(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    archive = store.open_archive("runs-archive", writable=True)
    archive.add([entry(1)])
    store.close()
    assert (tmp_path / "runs-archive" / "000001.jsonl").exists()
    with pytest.raises(ValueError, match="archive name"):
        FileStore(tmp_path).open_archive("../x", writable=False)
