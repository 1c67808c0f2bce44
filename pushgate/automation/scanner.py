"""One image-automation scan, and the loop that runs one every interval (`pushgate automate`).

Called by the CLI. A scan reads as its phases: read the branch (head, manifest files, revert
pins) -> find the opted-in containers -> list each image repository's tags once -> choose a tag
per container under its policy -> rewrite the files in place -> push ONE commit through the
server (`botpush`: the same receive path, gate, scopes and live check as a human push) -> write
the status once and notify (`image-bump-committed` / `image-bump-refused`).

No commit is made when nothing changed. A refused bump stores nothing; it is recorded with the
gate's report and not pushed again on the same branch head until `images.retryRefused` seconds
have passed (a newer tag or a new head makes a new bump at once).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pushgate import config as configmod
from pushgate import notify
from pushgate.automation import (
    botpush,
    bumps,
    credentials,
    errors,
    history,
    imageref,
    registry,
    status,
    tagpolicy,
    workloads,
)

log = logging.getLogger("pushgate.automation")
Push = Callable[..., botpush.Result]


@dataclass(frozen=True)
class _Change:
    target: workloads.Target
    bump: bumps.Bump
    image: str  # the new image text


class Scanner:
    def __init__(self, data_dir: str, cfg: configmod.Config, *, kubeconfig: str | None = None,
                 push: Push | None = None) -> None:
        if cfg.images is None:
            raise ValueError("no images section in the configuration")
        self.data_dir = data_dir
        self.cfg = cfg
        self.settings = cfg.images
        self.branch = self.settings.branch or cfg.reconcile.branch
        self.kubeconfig = kubeconfig
        self.push = push or botpush.push_changes

    def run(self, stop: threading.Event) -> None:
        """Scan now, then every interval (with jitter) until `stop` is set."""
        while not stop.is_set():
            try:
                doc = self.scan()
                log.info("image scan: %s: %s", doc.get("result"), doc.get("message"))
            except Exception:  # a scan must never end the loop: the next one may succeed
                log.exception("image scan failed")
            j = self.settings.jitter
            stop.wait(self.settings.interval * (1 + random.uniform(-j, j)))  # noqa: S311 - not crypto

    def scan(self) -> status.ImagesStatus:
        previous = status.read(self.data_dir)
        doc: status.ImagesStatus = {"branch": self.branch, "scans": previous.get("scans", 0) + 1,
                                    "bumps": [], "containers": [], "errors": []}
        for key in ("lastCommit", "lastRefusal"):
            if key in previous:
                doc[key] = previous[key]
        try:
            self._scan(doc, previous)
        finally:
            doc["updated"] = time.time()
            status.write(self.data_dir, doc)
        return doc

    def _scan(self, doc: status.ImagesStatus, previous: status.ImagesStatus) -> None:
        b = self.cfg.build
        snap = history.read(self.data_dir, self.branch, b.include, b.exclude, b.limits.max_file_bytes)
        if snap is None:
            _say(doc, "no-branch", f"branch {self.branch} has no commit yet")
            return
        doc["head"] = snap.head
        targets = [t for path, data in sorted(snap.files.items())
                   for t in workloads.find(path, data, b.limits)]
        client = registry.Client(self._credentials(doc), insecure=self.settings.insecure_registries,
                                 timeout=self.settings.timeout)
        changes = self._choose(targets, snap.pins, client, doc)
        files = self._rewrite(snap.files, changes, doc)
        done = [c for c in changes if c.target.path in files]
        doc["bumps"] = [c.bump.line() for c in done]
        if not done:
            errs = f", {len(doc['errors'])} errors" if doc["errors"] else ""
            _say(doc, "unchanged", f"nothing to bump in {len(targets)} opted-in containers{errs}")
            return
        self._commit(doc, previous, snap.head, files, [c.bump for c in done])

    def _credentials(self, doc: status.ImagesStatus) -> Callable[[str], registry.Credentials | None]:
        table: credentials.Table = {}
        try:
            if self.settings.credentials_file:
                table.update(credentials.from_file(self.settings.credentials_file))
            if self.settings.credentials_secret:
                table.update(credentials.from_secret(self.settings.credentials_secret, self.kubeconfig))
        except credentials.CredentialsError as e:
            doc["errors"].append(str(e))
        return table.get

    def _choose(self, targets: list[workloads.Target], pins: dict[str, set[str]],
                client: registry.Client, doc: status.ImagesStatus) -> list[_Change]:
        tags: dict[tuple[str, str], list[str] | errors.AutomationError] = {}
        out: list[_Change] = []
        for t in targets:
            entry: dict[str, Any] = {"path": t.path, "line": t.line, "workload": t.ref,
                                     "container": t.container, "image": t.image, "locked": t.locked,
                                     "policy": t.policy.describe() if t.policy else ""}
            doc["containers"].append(entry)
            ref = imageref.parse(t.image)
            if t.problem or t.policy is None or ref is None:
                entry["problem"] = t.problem
                doc["errors"].append(f"{t.path}:{t.line} {t.ref} container {t.container}: {t.problem}")
                continue
            if t.locked:
                continue  # never bumped, not even asked about
            key = (ref.registry, ref.repository)
            if key not in tags:
                try:
                    tags[key] = client.tags(*key)
                except errors.AutomationError as e:
                    tags[key] = e
            found = tags[key]
            if isinstance(found, errors.AutomationError):
                entry["problem"] = str(found)
                doc["errors"].append(f"{t.path}:{t.line} {t.ref} container {t.container}: {found}")
                continue
            pinned = pins.get(ref.name, set())
            if pinned:
                entry["pinned"] = sorted(pinned)
            latest = tagpolicy.latest(t.policy, found, pinned=pinned)
            entry["latest"] = latest or ""
            if latest is None or latest == ref.tag:
                continue
            if ref.tag and not tagpolicy.prefers(t.policy, latest, ref.tag):
                continue  # the workload already runs something the policy prefers: never go back
            bump = bumps.Bump(t.path, t.ref, t.container, ref.name, ref.tag, latest)
            out.append(_Change(t, bump, ref.with_tag(latest)))
        return out

    def _rewrite(self, files: dict[str, bytes], changes: list[_Change],
                 doc: status.ImagesStatus) -> dict[str, bytes]:
        by_path: dict[str, list[_Change]] = {}
        for c in changes:
            by_path.setdefault(c.target.path, []).append(c)
        out: dict[str, bytes] = {}
        for path, found in sorted(by_path.items()):
            try:
                out[path] = workloads.rewrite(path, files[path], [(c.target, c.image) for c in found],
                                              self.cfg.build.limits)
            except (workloads.RewriteError, UnicodeDecodeError) as e:
                doc["errors"].append(str(e))
        return out

    def _commit(self, doc: status.ImagesStatus, previous: status.ImagesStatus, head: str,
                files: dict[str, bytes], done: list[bumps.Bump]) -> None:
        lines = doc["bumps"]
        refusal = previous.get("lastRefusal")
        if (refusal and refusal["base"] == head and refusal["bumps"] == lines
                and time.time() - refusal["time"] < self.settings.retry_refused):
            _say(doc, "held", f"the same bump was refused on this head ({refusal['reason']}); "
                              f"pushed again after images.retryRefused or on a new head")
            return
        message = bumps.message(done)
        try:
            result = self.push(self.data_dir, self.branch, files, message, base=head)
        except botpush.BotPushError as e:
            _say(doc, "failed", f"not pushed: {e}")
            doc["errors"].append(f"not pushed: {e}")
            return
        n = f"{len(done)} image{'s' if len(done) != 1 else ''}"
        details = {"bumps": lines, "report": result.lines[:20], "reason": result.reason}
        if result.accepted:
            _say(doc, "committed", f"bumped {n} in {result.commit[:12]}")
            doc["lastCommit"] = {"time": time.time(), "commit": result.commit, "bumps": lines}
            notify.emit(self.data_dir, "image-bump-committed", f"pushgate bumped {n} on {self.branch}",
                        branch=self.branch, commit=result.commit, details=details)
            return
        if result.reason.startswith("push failed"):  # the server was not reached: not a verdict
            _say(doc, "failed", result.reason)
            doc["errors"].append(result.reason)
            return
        _say(doc, "refused", f"the bump of {n} was refused: {result.reason}")
        doc["lastRefusal"] = {"time": time.time(), "base": head, "commit": result.commit,
                              "reason": result.reason, "bumps": lines, "lines": result.lines}
        notify.emit(self.data_dir, "image-bump-refused",
                    f"pushgate's bump of {n} on {self.branch} was refused: {result.reason}",
                    branch=self.branch, commit=result.commit, details=details)


def _say(doc: status.ImagesStatus, result: str, message: str) -> None:
    doc["result"] = result
    doc["message"] = message
