"""A fresh clone served from the repository's own packs, streamed, not re-packed.

Called by `upload.BufferedUploadPackHandler` once dulwich has negotiated a fetch. dulwich writes
every pack object again (decompressed and compressed once more, in Python): for a 10,000-file
repository that is most of a clone's time. When the client has nothing in common with what it
wants (a clone), asked for no filter and no shallow history, speaks `ofs-delta`, and the
repository's packs hold exactly the objects reachable from what it wants -- nothing else --
the packs' entries are sent as they are, one after the other, under one
header and one checksum: a valid pack (an OFS_DELTA's base is at the same distance in the
stream as in its own pack; a REF_DELTA names its base, which is in the stream).

"Exactly" matters: objects a refused push never stored are not there anyway, but those of a
deleted or rewritten branch may still be in a pack, and a clone must not hand them out; such a
repository (or a clone that reaches a loose object) is served by dulwich as before. Deciding takes the walk a
clone needs anyway; the answer is cached per (wanted commits, pack files), so further clones of
the same state only stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

CHUNK = 1 << 16
_cache: dict[tuple[frozenset[bytes], tuple[tuple[str, int, int], ...]], bool] = {}
_lock = threading.Lock()


def pack_files(object_store: Any) -> list[str] | None:
    """The .pack files of a disk object store, in a stable order (None: not on disk). Loose
    objects (the reconciler's notes) do not matter: a clone that reaches one is not answered
    by the packs alone (`eligible` compares the sets), one that does not never sees them."""
    path = getattr(object_store, "path", None)
    if not path:
        return None
    pack_dir = os.path.join(path, "pack")
    try:
        names = sorted(n for n in os.listdir(pack_dir) if n.endswith(".pack"))
    except OSError:
        return None
    files = [os.path.join(pack_dir, n) for n in names]
    if not files or not all(os.path.exists(f[:-5] + ".idx") for f in files):
        return None
    return files


def _signature(files: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for f in files:
        st = os.stat(f)
        out.append((os.path.basename(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def eligible(object_store: Any, wants: Iterable[bytes], files: Sequence[str],
             reachable: Callable[[], set[bytes]]) -> bool:
    """Whether `files` hold exactly `reachable()` (the objects the clone needs).
    Cached per (wants, pack files); `reachable` is called only on a miss."""
    try:
        key = (frozenset(wants), _signature(files))
    except FileNotFoundError:
        return False  # a pack merged away since the listing (gitserver/consolidate.py)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    from dulwich.pack import load_pack_index

    in_packs: set[bytes] = set()
    total = 0
    try:
        for f in files:
            idx = load_pack_index(f[:-5] + ".idx", object_store.object_format)
            try:
                shas = list(idx.iterentries())
            finally:
                idx.close()
            total += len(shas)
            in_packs.update(sha_to_hex(e[0]) for e in shas)
        ok = in_packs == reachable() and plan(files, object_store.object_format) is not None
    except FileNotFoundError:
        return False
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = ok
    return ok


def sha_to_hex(raw: bytes) -> bytes:
    return raw.hex().encode() if len(raw) == 20 else raw


_OFS_DELTA = 6


def _entries(mm: Any, idx: Any) -> list[tuple[int, int, bytes, int | None]]:
    """(offset, end, sha, base offset of an OFS_DELTA or None) of each entry, in pack order."""
    rows = sorted((off, sha) for sha, off, _crc in idx.iterentries())
    out = []
    end_of_entries = len(mm) - 20
    for i, (off, sha) in enumerate(rows):
        end = rows[i + 1][0] if i + 1 < len(rows) else end_of_entries
        pos = off
        byte = mm[pos]
        kind = (byte >> 4) & 7
        while byte & 0x80:  # the size varint
            pos += 1
            byte = mm[pos]
        base = None
        if kind == _OFS_DELTA:
            pos += 1
            byte = mm[pos]
            rel = byte & 0x7F
            while byte & 0x80:
                pos += 1
                byte = mm[pos]
                rel = ((rel + 1) << 7) | (byte & 0x7F)
            base = off - rel
        out.append((off, end, sha_to_hex(sha), base))
    return out


def plan(files: Sequence[str], object_format: Any = None, handles: dict[str, Any] | None = None,
         ) -> tuple[list[tuple[str, list[tuple[int, int]]]], int] | None:
    """The byte ranges to send of each pack, each object once, and how many objects: an entry
    whose object an earlier pack already holds (dulwich completes a thin pack by appending its
    bases) is left out. None when that cannot be done without breaking a delta of its own pack
    (one refers to it, or spans it, by offset): the caller serves the clone another way. Reads
    the packs through `handles` (path -> open file) where given."""
    import mmap

    from dulwich.pack import load_pack_index

    plans: list[tuple[str, list[tuple[int, int]]]] = []
    sent: set[bytes] = set()
    total = 0
    for f in files:
        with contextlib.ExitStack() as opened:
            fh = handles[f] if handles is not None else opened.enter_context(open(f, "rb"))
            mm = opened.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
            if mm[:4] != b"PACK" or struct.unpack(">I", mm[4:8])[0] not in (2, 3):
                return None
            idx = load_pack_index(f[:-5] + ".idx", object_format)
            try:
                entries = _entries(mm, idx)
            finally:
                idx.close()
        deltas = [(off, b) for off, _, _, b in entries if b is not None]
        bases = {b for _, b in deltas}
        ranges: list[tuple[int, int]] = []
        for off, end, sha, _base in entries:
            if sha in sent:
                # Leaving an entry out moves what follows it closer to what precedes it: only
                # when no delta after it has its base before it (an OFS_DELTA's distance) --
                # thin-pack completion appends its bases at the end, where that holds.
                if off in bases or any(b < off < d for d, b in deltas):
                    return None
                continue
            sent.add(sha)
            total += 1
            if ranges and ranges[-1][1] == off:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((off, end))
        plans.append((f, ranges))
    return plans, total


class Vanished(FileNotFoundError):
    """A pack went away (merged by gitserver/consolidate.py) before anything was written: the
    caller serves the clone another way."""


def stream(files: Sequence[str], write: Callable[[bytes], None], object_format: Any = None) -> int:
    """One pack of `plan(files)`'s entries under one header and checksum; the objects sent.
    Every pack is opened before the first byte is written, so a pack removed later (a reader
    keeps an open file) cannot cut the stream; one already gone raises `Vanished`."""
    with contextlib.ExitStack() as stack:
        try:
            handles = {f: stack.enter_context(open(f, "rb")) for f in files}
            made = plan(files, object_format, handles)
        except FileNotFoundError as e:
            raise Vanished(str(e)) from e
        if made is None:
            raise ValueError("the packs cannot be streamed (see plan)")
        return _write(made, handles, write)


def _write(made: tuple[list[tuple[str, list[tuple[int, int]]]], int], handles: dict[str, Any],
           write: Callable[[bytes], None]) -> int:
    plans, total = made
    digest = hashlib.sha1(usedforsecurity=False)
    header = b"PACK" + struct.pack(">II", 2, total)
    digest.update(header)
    write(header)
    for f, ranges in plans:
        fh = handles[f]
        for start, end in ranges:
            fh.seek(start)
            left = end - start
            while left > 0:
                data = fh.read(min(CHUNK, left))
                if not data:
                    raise ValueError(f"{f}: truncated")
                left -= len(data)
                digest.update(data)
                write(data)
    write(digest.digest())
    return total
