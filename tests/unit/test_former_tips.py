"""A stateless fetch may want the tip its advertisement showed even when a push moved the ref
in between: the former tips are read after the refs (gitserver/repos.ServedRepo), on both of
the upload path's want checks. Real dulwich repositories on disk, no server: the push lands at
the worst moment, just before the request reads the refs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from dulwich.errors import GitProtocolError
from dulwich.server import DictBackend

from gitserver import repos
from gitserver.upload import BufferedUploadPackHandler
from tests.unit.test_receive_recovery import _commit


class _NoHaves:
    """A clone's graph walker: no common commits, no shallow boundary."""

    shallow: set[bytes] = set()  # noqa: RUF012
    unshallow: set[bytes] = set()  # noqa: RUF012

    def next(self) -> None:
        return None

    __next__ = next

    def ack(self, sha: bytes) -> None:
        raise AssertionError("nothing to acknowledge")


def _served(tmp_path: Path) -> tuple[repos.ServedRepo, bytes, bytes]:
    path = repos.ensure(str(tmp_path))
    served = repos.ServedRepo(path)
    a = _commit(served, b"a", [])
    b = _commit(served, b"b", [a])
    served.refs[b"refs/heads/main"] = a
    served.stateless = True
    real = served.get_refs
    pushed = []

    def get_refs() -> Any:
        if not pushed:  # the push A -> B lands just before this request reads the refs
            pushed.append(True)
            with repos.locked(path):
                repos.commit(served, path, [repos.RefUpdate(b"refs/heads/main", a, b)])
        return real()

    served.get_refs = get_refs  # type: ignore[method-assign]
    return served, a, b


def _wants(sha: bytes) -> Any:
    def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
        if sha not in refs.values():  # as dulwich's _ProtocolGraphWalker checks a want
            raise GitProtocolError(f"Client wants invalid object {sha!r}")
        return [sha]
    return determine_wants


def test_the_handler_accepts_the_tip_a_push_moved_away(tmp_path: Path) -> None:
    served, a, b = _served(tmp_path)
    handler = BufferedUploadPackHandler(DictBackend({b"/": served}), [b"/"], proto=None,
                                        stateless_rpc=True)
    handler.repo = served
    handler.set_client_capabilities([b"side-band-64k", b"ofs-delta", b"thin-pack"])
    finder = handler._find_missing(_wants(a), _NoHaves())
    assert served.refs[b"refs/heads/main"] == b
    assert a in {oid for oid, _ in finder}


def test_served_repo_accepts_the_tip_a_push_moved_away(tmp_path: Path) -> None:
    served, a, b = _served(tmp_path)
    finder = served.find_missing_objects(_wants(a), _NoHaves(), None)
    assert served.refs[b"refs/heads/main"] == b
    assert finder is not None and a in {oid for oid, _ in finder}


def test_a_tip_never_seen_stays_invalid(tmp_path: Path) -> None:
    served, a, _b = _served(tmp_path)
    stray = _commit(served, b"stray", [a])  # in the store, never a ref's tip
    with pytest.raises(GitProtocolError):
        served.find_missing_objects(_wants(stray), _NoHaves(), None)
    served.stateless = False  # the advertisement's own request: refs only
    with pytest.raises(GitProtocolError):
        served.find_missing_objects(_wants(a), _NoHaves(), None)
