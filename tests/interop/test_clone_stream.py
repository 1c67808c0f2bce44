"""A fresh clone is streamed from the repository's own packs when they hold exactly what the
clone needs, and served by dulwich otherwise; with the stock git client either way the clone is
complete and valid (`git fsck --strict`), and objects no ref reaches are never handed out."""

from __future__ import annotations

from pathlib import Path

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

STREAMED = "sending the repository's packs as they are"


def clone(git: Git, server: Server, dest: Path) -> str:
    res = git.run("clone", "--progress", "--no-checkout", server.url("reader"), str(dest))
    git.run("fsck", "--strict", "--no-dangling", cwd=dest)
    return res.stderr


def _loose_blob(git: Git, server: Server) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(server.repo), "hash-object", "-w", "--stdin"],
                          input="a loose blob\n", capture_output=True, text=True, check=True,
                          env=git.env).stdout.strip()


def test_clone_of_several_pushes_is_streamed_and_valid(git: Git, server: Server, tmp_path: Path) -> None:
    work = git.init(tmp_path / "work")
    shas = []
    for i in range(4):  # one pack per push, deltas and all
        git.write(work, {"ns.yaml": samples.namespace(),
                         f"cm-{i}.yaml": samples.configmap(name=f"cm-{i}", value=str(i) * 200),
                         "shared.yaml": samples.configmap(name="shared", value="v" * 300 + str(i))})
        shas.append(git.commit_all(work, f"push {i}"))
        git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    assert len(list((server.repo / "objects" / "pack").glob("*.pack"))) >= 4
    # a loose object no ref reaches (the reconciler writes its notes loose): not a reason to
    # re-pack, and never handed out
    loose = _loose_blob(git, server)
    first = clone(git, server, tmp_path / "c1")
    assert git.run("cat-file", "-e", loose, cwd=tmp_path / "c1", check=False).returncode != 0
    again = clone(git, server, tmp_path / "c2")  # the cached decision
    for out, dest in ((first, "c1"), (again, "c2")):
        assert STREAMED in out, out
        assert git.rev_parse(tmp_path / dest, "origin/main") == shas[-1]
        log = git.run("log", "--format=%H", "origin/main", cwd=tmp_path / dest).stdout.split()
        assert log == shas[::-1]
    # and a fetch of new commits (the client has some) goes the ordinary way
    git.write(work, {"late.yaml": samples.configmap(name="late")})
    late = git.commit_all(work, "late")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    res = git.run("fetch", "--progress", "origin", cwd=tmp_path / "c1")
    assert STREAMED not in res.stderr
    assert git.rev_parse(tmp_path / "c1", "origin/main") == late
    git.run("fsck", "--strict", "--no-dangling", cwd=tmp_path / "c1")


def test_objects_of_a_deleted_branch_are_never_cloned(git: Git, server: Server, tmp_path: Path) -> None:
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(), "cm.yaml": samples.configmap()})
    git.commit_all(work, "main")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    git.run("checkout", "-q", "-b", "secret", cwd=work)
    git.write(work, {"leak.yaml": samples.configmap(name="leak", value="do-not-ship")})
    secret = git.commit_all(work, "secret")
    git.run("push", "-q", server.url("admin"), "HEAD:refs/heads/secret", cwd=work)
    git.run("push", "-q", server.url("admin"), ":refs/heads/secret", cwd=work)
    out = clone(git, server, tmp_path / "c")
    assert STREAMED not in out  # its pack holds what no ref reaches: dulwich picks the objects
    res = git.run("cat-file", "-e", secret, cwd=tmp_path / "c", check=False)
    assert res.returncode != 0, "an unreachable commit was handed out"


def test_packs_sharing_objects_clone_valid_either_way(git: Git, server: Server, tmp_path: Path) -> None:
    """Branches pushed from unrelated clones repeat objects main's pack holds (the same file),
    in the middle of their packs: leaving such an entry out would move the deltas after it, so
    whether streamed or not, every clone must unpack (unpack-objects for small packs, index-pack
    for large ones) and be complete."""
    work = git.init(tmp_path / "work")
    files = {f"cm-{i}.yaml": samples.configmap(name=f"cm-{i}", value="x" * 300 + str(i))
             for i in range(12)}
    git.write(work, {"ns.yaml": samples.namespace(), **files})
    git.commit_all(work, "main")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    for i in range(3):
        other = git.init(tmp_path / f"other-{i}")
        git.write(other, {"cm-0.yaml": files["cm-0.yaml"],
                          f"own-{i}.yaml": samples.configmap(name=f"own-{i}")})
        git.commit_all(other, f"branch {i}")
        git.run("push", "-q", server.url("writer"), f"HEAD:refs/heads/b{i}", cwd=other)
        for limit in ("100", "1"):  # unpack-objects, then index-pack
            dest = tmp_path / f"c-{i}-{limit}"
            git.run("-c", f"transfer.unpackLimit={limit}", "clone", "-q", "--no-checkout",
                    server.url("reader"), str(dest))
            git.run("fsck", "--strict", "--no-dangling", cwd=dest)
            for b in range(i + 1):
                assert git.rev_parse(dest, f"origin/b{b}")


def test_a_repeated_object_that_deltas_of_its_pack_build_on_is_streamed(
        git: Git, server: Server, tmp_path: Path) -> None:
    """A branch pushed from an unrelated clone brings a file main's pack already holds, and
    variants of it that git deltas against it: that copy is the base of deltas in its own pack
    (or main's is), so one of the two must be left out of the stream while deltas reach across
    it. Such a pack's deltas go out naming their base, and the clone is still streamed, complete
    and valid, through unpack-objects and through index-pack."""
    work = git.init(tmp_path / "work")
    base = samples.configmap(name="cm-0", value="line of configuration\n" * 40)
    git.write(work, {"ns.yaml": samples.namespace(), "cm-0.yaml": base,
                     **{f"cm-{i}.yaml": samples.configmap(name=f"cm-{i}", value=f"{i}" * 300)
                        for i in range(1, 8)}})
    git.commit_all(work, "main")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    other = git.init(tmp_path / "other")
    git.write(other, {"cm-0.yaml": base, **{f"v-{i}.yaml": base.replace("cm-0", f"v-{i}") + f"# {i}\n"
                                            for i in range(6)}})
    branch = git.commit_all(other, "variants of a file main has")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/variants", cwd=other)
    packs = list((server.repo / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 2
    for limit in ("100", "1"):  # unpack-objects, then index-pack
        dest = tmp_path / f"c-{limit}"
        res = git.run("-c", f"transfer.unpackLimit={limit}", "clone", "--progress", "--no-checkout",
                      server.url("reader"), str(dest))
        assert STREAMED in res.stderr, res.stderr
        git.run("fsck", "--strict", "--no-dangling", cwd=dest)
        assert git.rev_parse(dest, "origin/variants") == branch
        names = git.run("ls-tree", "--name-only", "origin/variants", cwd=dest).stdout.split()
        assert names == ["cm-0.yaml", *(f"v-{i}.yaml" for i in range(6))]
