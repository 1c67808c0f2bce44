"""pushgate's own commits (image bumps, automatic reverts), pushed like anyone else's.

Called by the image automation and by the reconciler's automatic revert. A commit is made on
top of the branch head from the repository on disk (read only: the new objects live in memory)
and sent over smart HTTP to the running server as the configured automation user
(`automation` in the configuration), so the same receive path, gate, scopes, signed-commit rule
and live check decide, the push is logged and notified like a human's, and nothing reaches the
repository unless it is accepted. The server's report lines come back for status and
notifications. The branch must still be at `base` when the push lands (the server's
compare-and-swap): a commit made on a head that moved meanwhile is refused, never forced.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from pushgate import config as configmod
from pushgate import datadir

ZERO = b"0" * 40


class BotPushError(Exception):
    """pushgate cannot make or send its commit (no automation user, no server, a conflict)."""


@dataclass
class Result:
    accepted: bool
    commit: str  # the commit made (also when refused)
    lines: list[str] = field(default_factory=list)  # what the server reported ("remote:" lines)
    reason: str = ""  # one line: why it was refused, or "accepted"


@dataclass(frozen=True)
class Identity:
    url: str  # the server's base URL
    user: str
    token: str
    author: bytes  # b"Name <email>"


def identity(data_dir: str, cfg: configmod.Config | None = None, run_dir: str | None = None) -> Identity:
    """Who pushes and where, from the persisted configuration and the run dir."""
    cfg = cfg or configmod.load_persisted(data_dir)
    if cfg is None or not cfg.automation.user:
        raise BotPushError("no automation user configured (automation.user and automation.tokenFile)")
    a = cfg.automation
    try:
        with open(a.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise BotPushError(f"automation.tokenFile {a.token_file}: cannot read: {e.strerror}") from e
    if not token:
        raise BotPushError(f"automation.tokenFile {a.token_file} is empty")
    url = a.url
    if not url:
        where = os.path.join(run_dir or datadir.run_dir(data_dir), datadir.SERVER_URL)
        try:
            with open(where, encoding="utf-8") as f:
                url = f.read().strip()
        except OSError as e:
            raise BotPushError(f"the server's address is unknown ({where}: {e.strerror}); set "
                               f"automation.url") from e
    return Identity(url.rstrip("/"), a.user, token, a.author.encode())


def head(data_dir: str, branch: str) -> str | None:
    """The branch's commit in the repository on disk (None: no such branch)."""
    from dulwich.repo import Repo

    repo = Repo(datadir.repo_path(data_dir))
    try:
        refs: dict[Any, Any] = dict(repo.refs.as_dict())
        sha = refs.get(f"refs/heads/{branch}".encode())
        return sha.decode() if sha else None
    finally:
        repo.close()


def push_changes(data_dir: str, branch: str, changes: Mapping[str, bytes | None], message: str, *,
                 base: str, who: Identity | None = None, options: tuple[str, ...] = ()) -> Result:
    """One commit on `base` that sets each path to its bytes (None: removes it), pushed."""
    from dulwich.object_store import commit_tree_changes
    from dulwich.objects import Blob

    def build(store: Any, base_commit: Any) -> Any:
        edits: list[Any] = []
        for path, data in sorted(changes.items()):
            if data is None:
                edits.append((path.encode(), None, None))
                continue
            blob = Blob.from_string(data)
            store.add_object(blob)
            edits.append((path.encode(), stat.S_IFREG | 0o644, blob.id))
        return commit_tree_changes(store, base_commit.tree, edits)

    return _push(data_dir, branch, base, message, build, who, options)


def revert(data_dir: str, branch: str, commit: str, message: str, *, base: str,
           who: Identity | None = None) -> Result:
    """A commit on `base` that undoes `commit` (every path it changed back to its parent's
    version), pushed. BotPushError when a path changed again since: no merge is guessed."""
    from dulwich.diff_tree import tree_changes

    def build(store: Any, base_commit: Any) -> Any:
        from dulwich.object_store import commit_tree_changes

        target = store[commit.encode()]
        if len(target.parents) != 1:
            raise BotPushError(f"{commit[:12]} has {len(target.parents)} parents: not reverted")
        parent = store[target.parents[0]]
        edits: list[Any] = []
        for ch in tree_changes(store, parent.tree, target.tree):
            old = ch.old if ch.old is not None and ch.old.sha else None
            new = ch.new if ch.new is not None and ch.new.sha else None
            path = (new or old).path  # type: ignore[union-attr]
            now = _lookup(store, base_commit.tree, path)
            if now != ((new.mode, new.sha) if new else None):
                raise BotPushError(f"{path.decode(errors='replace')} changed again after "
                                   f"{commit[:12]}: not reverted automatically")
            edits.append((path, old.mode, old.sha) if old else (path, None, None))
        return commit_tree_changes(store, base_commit.tree, edits)

    return _push(data_dir, branch, base, message, build, who, ())


def _lookup(store: Any, tree_id: bytes, path: bytes) -> tuple[int, bytes] | None:
    from dulwich.object_store import tree_lookup_path

    try:
        mode, sha = tree_lookup_path(store.__getitem__, cast(Any, tree_id), path)
    except KeyError:
        return None
    return int(mode), sha


def _push(data_dir: str, branch: str, base: str, message: str,
          build: Callable[[Any, Any], Any], who: Identity | None,
          options: tuple[str, ...]) -> Result:
    from dulwich.client import HttpGitClient
    from dulwich.object_store import MemoryObjectStore, OverlayObjectStore
    from dulwich.objects import Commit
    from dulwich.pack import pack_objects_to_data
    from dulwich.repo import Repo

    who = who or identity(data_dir)
    repo = Repo(datadir.repo_path(data_dir))
    try:
        new = MemoryObjectStore()
        store = OverlayObjectStore([new, repo.object_store], add_store=new)
        base_commit: Any = store[cast(Any, base.encode())]
        tree = build(store, base_commit)
        c = Commit()
        c.tree = tree
        c.parents = [cast(Any, base.encode())]
        c.author = c.committer = who.author
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.encoding = b"UTF-8"
        c.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
        new.add_object(c)
        objects = [new[sha] for sha in new]
    finally:
        repo.close()
    ref = f"refs/heads/{branch}".encode()
    lines: list[str] = []
    buf = bytearray()

    def progress(data: bytes) -> None:
        buf.extend(data)
        while b"\n" in buf or b"\r" in buf:
            cut = min(i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0)
            line = bytes(buf[:cut]).decode("utf-8", "replace").strip()
            del buf[:cut + 1]
            if line:
                lines.append(line)

    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        if refs.get(ref, ZERO) != base.encode():
            raise BotPushError(f"{branch} moved ({base[:12]} -> "
                               f"{refs.get(ref, ZERO).decode()[:12]}) while the commit was made")
        return {ref: c.id}

    def pack_data(have: Any, want: Any, *args: Any, **kwargs: Any) -> tuple[int, Iterator[Any]]:
        return pack_objects_to_data([(o, None) for o in objects])

    client = HttpGitClient(who.url, username=who.user, password=who.token, timeout=600, quiet=True)
    try:
        result = client.send_pack(f"/{datadir.REPO}", cast(Any, update_refs), pack_data, progress=progress,
                                  push_options=[o.encode() for o in options] or None)
    except BotPushError:
        raise
    except Exception as e:  # transport and protocol errors of every kind: reported, not raised
        return Result(False, c.id.decode(), lines, f"push failed: {str(e).splitlines()[0][:300]}")
    if buf.strip():
        lines.append(bytes(buf).decode("utf-8", "replace").strip())
    status = (getattr(result, "ref_status", None) or {}).get(ref)
    if status is None:
        return Result(True, c.id.decode(), lines, "accepted")
    return Result(False, c.id.decode(), lines, str(status))
