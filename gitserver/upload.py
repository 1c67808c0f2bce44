"""The upload (clone/fetch) path: dulwich's UploadPackHandler with its pack data coalesced, and
a fresh clone streamed from the repository's own packs (`packstream`) where that is exact.

Called by `app` for `git-upload-pack`. dulwich writes each pack object as several side-band
packets, and dulwich.web hands each one to the WSGI `write()`: under gunicorn that is one HTTP
chunk and one send() per piece, ~30,000 for a 10,000-file clone, which tripled its time (see
bench/RESULTS.md, clone). Here pack data is gathered into full 64 KiB side-band packets, as C
git sends them, and flushed before the terminating flush-pkt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dulwich.protocol import CAPABILITY_NO_DONE, CAPABILITY_OFS_DELTA, CAPABILITY_SIDE_BAND_64K
from dulwich.server import UploadPackHandler, _ProtocolGraphWalker

from gitserver import objectwalk, packstream, repos

# The largest side-band-64k payload: a 65520-byte pkt-line less its 4-byte length and channel.
SIDEBAND_PAYLOAD = 65515


class BufferedUploadPackHandler(UploadPackHandler):
    def _start_pack_send_phase(self) -> None:
        super()._start_pack_send_phase()
        if not self.has_capability(CAPABILITY_SIDE_BAND_64K):
            return
        send: Callable[[bytes], None] = self.write_pack_data
        buf = bytearray()

        def take() -> bytes:
            data = bytes(buf)
            buf.clear()  # before sending: `send` comes back through flush_then_write
            return data

        def write(data: bytes) -> None:
            buf.extend(data)
            if len(buf) >= SIDEBAND_PAYLOAD:
                send(take())  # write_sideband splits it into packets of SIDEBAND_PAYLOAD

        write_pkt_line = self.proto.write_pkt_line

        def flush_then_write(line: bytes | None) -> None:
            # Buffered data first, then what follows it (progress, or the flush-pkt ending the
            # pack); write_sideband calls this too, with the buffer already taken.
            if buf:
                send(take())
            write_pkt_line(line)

        self.write_pack_data = write
        self.proto.write_pkt_line = flush_then_write  # type: ignore[method-assign]

    def handle(self) -> None:
        """dulwich's `handle` (dulwich 1.2, pinned < 1.3), except that a clone the repository's
        packs answer exactly is streamed from them; everything else goes to dulwich."""
        files = packstream.pack_files(self.repo.object_store)
        if files is None:
            super().handle()
            return
        self._processing_have_lines = True
        graph_walker = _ProtocolGraphWalker(self, self.repo.object_store, self.repo.get_peeled,
                                            self.repo.refs.get_symrefs)
        wants: list[Any] = []

        def wants_wrapper(refs: Mapping[Any, Any], depth: int | None = None) -> list[Any]:
            wants.extend(graph_walker.determine_wants(refs, depth))
            return wants

        missing = self._find_missing(wants_wrapper, graph_walker)
        if len(wants) == 0 or missing is None:
            return
        walked: list[Any] | None = None

        def reachable() -> set[Any]:
            nonlocal walked
            walked = list(missing)
            return {oid for oid, _ in walked}

        streamable = (not getattr(missing, "remote_has", True) and self.filter_spec is None
                      and not getattr(graph_walker, "shallow", None)
                      and not getattr(graph_walker, "unshallow", None)
                      and self.has_capability(CAPABILITY_OFS_DELTA)
                      and packstream.eligible(self.repo.object_store, wants, files, reachable))
        object_ids: list[Any] | None = None
        if not streamable:
            object_ids = walked if walked is not None else list(missing)
        if not graph_walker.handle_done(not self.has_capability(CAPABILITY_NO_DONE),
                                        self._done_received):
            return
        self._start_pack_send_phase()
        if object_ids is None:
            self.progress(b"sending the repository's packs as they are\n")
            try:
                packstream.stream(files, self.write_pack_data, self.repo.object_store.object_format)
            except packstream.Vanished:  # merged away since the decision; nothing sent yet
                self._send_objects(wants, walked if walked is not None else list(missing))
        else:
            self._send_objects(wants, object_ids)
        self.proto.write_pkt_line(None)

    def _find_missing(self, determine_wants: Callable[..., list[Any]], graph_walker: Any) -> Any:
        """What to send, as dulwich 1.2's `Repo.find_missing_objects` (and `ServedRepo`'s want
        check) decides it (refs to absent objects left out, the shallow boundary honoured),
        except that a fetch with common commits is walked by `objectwalk` instead of collecting
        every common tree."""
        from dulwich.object_store import MissingObjectFinder
        from dulwich.repo import ParentsProvider

        store = self.repo.object_store
        refs = {ref: sha for ref, sha in self.repo.get_refs().items() if sha in store}
        # Former tips too, read after the refs (repos.ServedRepo): the client may want what a
        # ref pointed at when it read the refs, before a push moved it.
        tips = self.repo.former_tips() if isinstance(self.repo, repos.ServedRepo) else {}
        wants = determine_wants({**tips, **refs}, None)
        shallow = set(getattr(graph_walker, "shallow", set()))
        unshallow = set(getattr(graph_walker, "unshallow", set()))
        if not wants:
            return None if shallow or unshallow else MissingObjectFinder(store, haves=[], wants=[])
        haves = store.find_common_revisions(graph_walker)  # ACKs go to the client from here
        if shallow or unshallow or not haves:
            parents = ParentsProvider(store, shallows=shallow)
            return MissingObjectFinder(
                store, haves=[] if shallow or unshallow else haves, wants=wants, shallow=shallow,
                progress=self.progress, get_tagged=self.get_tagged,
                get_parents=lambda commit: parents.get_parents(commit.id, commit))
        return objectwalk.SparseFinder(store, haves, wants, progress=self.progress,
                                       get_tagged=self.get_tagged)

    def _send_objects(self, wants: list[Any], object_ids: list[Any]) -> None:
        """dulwich 1.2's own tail of `handle`: the filter (partial clone), then the pack."""
        from dulwich.object_filters import (
            CombineFilter,
            SparseOidFilter,
            TreeDepthFilter,
            filter_pack_objects,
            filter_pack_objects_with_paths,
        )
        from dulwich.pack import write_pack_from_container

        if self.filter_spec is not None:
            original = len(object_ids)

            def needs_paths(spec: Any) -> bool:
                if isinstance(spec, TreeDepthFilter | SparseOidFilter):
                    return True
                return isinstance(spec, CombineFilter) and any(needs_paths(f) for f in spec.filters)

            if needs_paths(self.filter_spec):
                kept = filter_pack_objects_with_paths(self.repo.object_store, wants, self.filter_spec,
                                                      progress=self.progress)
                object_ids = [(oid, None) for oid in kept]
            else:
                keep = set(filter_pack_objects(self.repo.object_store,
                                               [oid for oid, _ in object_ids], self.filter_spec))
                object_ids = [(oid, hint) for oid, hint in object_ids if oid in keep]
            if original - len(object_ids) > 0:
                self.progress(f"filtered {original - len(object_ids)} objects.\n".encode("ascii"))
        self.progress(f"counting objects: {len(object_ids)}, done.\n".encode("ascii"))
        write_pack_from_container(self.write_pack_data, self.repo.object_store, object_ids,
                                  object_format=self.repo.object_format,
                                  reuse_deltas=_worth_reusing_deltas(self.repo.object_store,
                                                                     len(object_ids)))


# Reading an object through the pack index costs about this many sequential pack reads.
REUSE_RATIO = 5


def _worth_reusing_deltas(store: Any, count: int) -> bool:
    """dulwich finds reusable deltas by reading every object of every pack in order, whatever
    the count asked for: right for a clone or a big fetch (the deltas go out as stored), but for
    10 files out of a 10,000-object pack it read all 10,000 (bench/RESULTS.md, fetch). Few
    objects are read one by one through the index and sent whole instead."""
    try:
        packed = sum(len(pack) for pack in store.packs)
    except Exception:  # a pack replaced under us: let dulwich's own path cope with it
        return True
    return count * REUSE_RATIO >= packed
