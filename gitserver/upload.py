"""The upload (clone/fetch) path: dulwich's UploadPackHandler with its pack data coalesced.

Called by `app` for `git-upload-pack`. dulwich writes each pack object as several side-band
packets, and dulwich.web hands each one to the WSGI `write()`: under gunicorn that is one HTTP
chunk and one send() per piece, ~30,000 for a 10,000-file clone, which tripled its time (see
bench/RESULTS.md, clone). Here pack data is gathered into full 64 KiB side-band packets, as C
git sends them, and flushed before the terminating flush-pkt.
"""

from __future__ import annotations

from collections.abc import Callable

from dulwich.protocol import CAPABILITY_SIDE_BAND_64K
from dulwich.server import UploadPackHandler

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
