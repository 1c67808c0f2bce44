"""A fresh clone served from the repository's own packs, streamed, not re-packed.

Called by `upload.BufferedUploadPackHandler` once dulwich has negotiated a fetch. dulwich writes
every pack object again (decompressed and compressed once more, in Python): for a 10,000-file
repository that is most of a clone's time. When the client has nothing in common with what it
wants (a clone), asked for no filter and no shallow history, speaks `ofs-delta`, and the
repository's packs hold exactly the objects reachable from what it wants -- nothing else --
the packs' entries are sent as they are, one after the other, under one
header and one checksum: a valid pack (an OFS_DELTA's base is at the same distance in the
stream as in its own pack; a REF_DELTA names its base, which is in the stream). An object two
packs hold is sent once; where leaving the other copy out would change such a distance, that
pack's OFS_DELTAs go out as REF_DELTAs (see `plan`).

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
from typing import Any, NamedTuple, TypeAlias

CHUNK = 1 << 16
_cache: dict[tuple[frozenset[bytes], Signature], bool] = {}  # (wants, packs) -> eligible
# plan()'s answer per (pack files, object format): every clone of one state streams the same
# parts, and making them walks every entry of every pack in Python (~30-50 ms at 10,000
# objects, a fifth of a clone's time; bench/RESULTS.md, clone). Keyed by the packs' _signature;
# a few states are kept: a plan holds one part per rewritten entry.
_plans: dict[tuple[Signature, str | None], Any] = {}
_PLANS_KEPT = 4
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


Signature: TypeAlias = tuple[tuple[str, int, int, int], ...]


def _signature(files: Sequence[str], handles: dict[str, Any] | None = None) -> Signature:
    """What names the packs' content: path, inode, size and mtime of each (a pack file is never
    rewritten in place; a merge or a push writes a new one). With `handles`, of the files open."""
    out = []
    for f in files:
        st = os.fstat(handles[f].fileno()) if handles is not None else os.stat(f)
        out.append((f, st.st_ino, st.st_size, st.st_mtime_ns))
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
        ok = in_packs == reachable() and planned(files, object_store.object_format) is not None
    except FileNotFoundError:
        return False
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = ok
    return ok


def sha_to_hex(raw: bytes) -> bytes:
    return raw.hex().encode() if len(raw) == 20 else raw


_OFS_DELTA, _REF_DELTA = 6, 7


class _Entry(NamedTuple):
    off: int  # where the entry starts in its pack
    end: int  # where the next one starts (or the trailing checksum)
    sha: bytes  # the object's name as the index holds it (binary)
    base: int | None  # an OFS_DELTA's base offset
    data: int  # where the entry's data starts: after the header (and an OFS_DELTA's offset)
    size_end: int  # where the header's type-and-size varint ends


def _entries(mm: Any, idx: Any) -> list[_Entry]:
    """Every entry of a pack, in pack order."""
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
        size_end = pos + 1
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
        out.append(_Entry(off, end, sha, base, pos + 1, size_end))
    return out


def spanned(offsets: Sequence[int], deltas: Sequence[tuple[int, int | None]]) -> bool:
    """Whether an offset lies strictly between an OFS_DELTA (at `d`) and its base (at `b`), for
    (d, b) in `deltas`: sorted sweeps, not every offset against every delta (a merged pack can
    hold thousands of each)."""
    spans = sorted((b, d) for d, b in deltas if b is not None)
    i, reach = 0, -1
    for off in sorted(offsets):
        while i < len(spans) and spans[i][0] < off:
            reach = max(reach, spans[i][1])
            i += 1
        if reach > off:
            return True
    return False


# A part of the stream: `prefix` (a rewritten entry header, or nothing), then the pack's bytes
# from `start` to `end`.
Part: TypeAlias = tuple[bytes, int, int]


def plan(files: Sequence[str], object_format: Any = None, handles: dict[str, Any] | None = None,
         ) -> tuple[list[tuple[str, list[Part]]], int] | None:
    """The parts to send of each pack, each object once, and how many objects. An entry whose
    object an earlier pack already holds (dulwich completes a thin pack by appending its bases;
    a branch pushed from an unrelated clone brings files the repository has) is left out.
    Leaving one out moves what follows it closer to what precedes it, which breaks an OFS_DELTA
    of the same pack that reaches across it: in such a pack every OFS_DELTA kept is sent as a
    REF_DELTA instead (the same data, its base named by id; the base is in the stream, kept
    here or sent from an earlier pack), which `git index-pack` and `unpack-objects` resolve
    wherever the base is. None when a pack is not one this can read. Reads the packs through
    `handles` (path -> open file) where given."""
    import mmap

    from dulwich.pack import load_pack_index

    plans: list[tuple[str, list[Part]]] = []
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
            left_out = [e.off for e in entries if e.sha in sent]
            deltas = [(e.off, e.base) for e in entries if e.base is not None]
            bases = {b for _, b in deltas if b is not None}
            # Thin-pack completion appends its bases at the end, where leaving them out moves
            # nothing an offset spans: those packs are sent as they are, but for the repeats.
            rewrite = not bases.isdisjoint(left_out) or spanned(left_out, deltas)
            names = {e.off: e.sha for e in entries} if rewrite else {}
            parts: list[Part] = []
            for e in entries:
                if e.sha in sent:
                    continue
                sent.add(e.sha)
                total += 1
                if rewrite and e.base is not None:
                    base = names.get(e.base)
                    if base is None:
                        return None  # no entry starts there: not a pack this can read
                    head = bytes([(mm[e.off] & 0x8F) | (_REF_DELTA << 4)]) + mm[e.off + 1:e.size_end]
                    parts.append((head + base, e.data, e.end))
                elif parts and not parts[-1][0] and parts[-1][2] == e.off:
                    parts[-1] = (b"", parts[-1][1], e.end)
                else:
                    parts.append((b"", e.off, e.end))
        plans.append((f, parts))
    return plans, total


def planned(files: Sequence[str], object_format: Any = None, handles: dict[str, Any] | None = None,
            ) -> tuple[list[tuple[str, list[Part]]], int] | None:
    """`plan(files, object_format, handles)`, made once per state of the packs. With `handles`
    the files are named by what is open, so a plan is never used for another file that took a
    pack's path."""
    key = (_signature(files, handles), getattr(object_format, "name", None))
    with _lock:
        if key in _plans:
            return _plans[key]  # type: ignore[no-any-return]
    made = plan(files, object_format, handles)
    with _lock:
        if len(_plans) >= _PLANS_KEPT:
            _plans.clear()
        _plans[key] = made
    return made


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
            made = planned(files, object_format, handles)
        except FileNotFoundError as e:
            raise Vanished(str(e)) from e
        if made is None:
            raise ValueError("the packs cannot be streamed (see plan)")
        return _write(made, handles, write)


def _write(made: tuple[list[tuple[str, list[Part]]], int], handles: dict[str, Any],
           write: Callable[[bytes], None]) -> int:
    plans, total = made
    digest = hashlib.sha1(usedforsecurity=False)
    header = b"PACK" + struct.pack(">II", 2, total)
    digest.update(header)
    write(header)
    for f, parts in plans:
        fh = handles[f]
        for prefix, start, end in parts:
            if prefix:
                digest.update(prefix)
                write(prefix)
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
