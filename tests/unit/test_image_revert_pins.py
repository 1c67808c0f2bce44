"""A `git revert` of a bump commit pins the tags it introduced (derived from history alone);
reverting the revert lifts the pin; bump messages read back as written."""

from __future__ import annotations

from pushgate.automation import bumps

B1 = [bumps.Bump("apps/web.yaml", "Deployment/shop/web", "web", "127.0.0.1:5000/shop/web", "1.0.0", "1.1.0"),
      bumps.Bump("apps/api.yaml", "Deployment/shop/api", "api", "reg/api", "", "7")]
SHA = {n: f"{n:040x}" for n in range(1, 10)}


def revert_message(sha: str, subject: str = bumps.SUBJECT) -> str:
    return f'Revert "{subject}"\n\nThis reverts commit {sha}.\n'


def test_the_message_lists_every_bump_and_reads_back() -> None:
    text = bumps.message(B1)
    assert text.splitlines() == [
        "pushgate: bump images", "",
        "apps/api.yaml: Deployment/shop/api api: reg/api (none) -> 7",
        "apps/web.yaml: Deployment/shop/web web: 127.0.0.1:5000/shop/web 1.0.0 -> 1.1.0"]
    assert sorted(bumps.parse(text) or [], key=lambda b: b.path) == sorted(B1, key=lambda b: b.path)
    assert bumps.parse("fix: things\n\napps/web.yaml: a b: c 1 -> 2") is None


def test_a_reverted_bump_pins_its_new_tags() -> None:
    history = [bumps.Commit(SHA[1], "seed"), bumps.Commit(SHA[2], bumps.message(B1)),
               bumps.Commit(SHA[3], revert_message(SHA[2]))]
    assert bumps.pins(history, {}) == {"127.0.0.1:5000/shop/web": {"1.1.0"}, "reg/api": {"7"}}
    assert bumps.pins(history[:2], {}) == {}


def test_reverting_the_revert_lifts_the_pin() -> None:
    history = [bumps.Commit(SHA[2], bumps.message(B1)), bumps.Commit(SHA[3], revert_message(SHA[2])),
               bumps.Commit(SHA[4], revert_message(SHA[3], f'Revert "{bumps.SUBJECT}"'))]
    assert bumps.pins(history, {}) == {}


def test_a_revert_of_a_human_commit_pins_nothing() -> None:
    history = [bumps.Commit(SHA[2], "bump web by hand\n\napps/web.yaml: x y: z 1 -> 2\n"),
               bumps.Commit(SHA[3], revert_message(SHA[2], "bump web by hand"))]
    assert bumps.pins(history, {}) == {}


def test_a_bump_outside_the_window_is_looked_up() -> None:
    history = [bumps.Commit(SHA[3], revert_message(SHA[2]))]
    assert bumps.pins(history, {SHA[2]: bumps.message(B1[:1])}) == {"127.0.0.1:5000/shop/web": {"1.1.0"}}
