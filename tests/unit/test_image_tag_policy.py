"""Tag policies as Flux's ImagePolicy chooses: semver ranges (pre-releases only when the range
names one), alphabetical and numerical order both ways, filter + extract, and revert pins."""

from __future__ import annotations

import pytest

from pushgate.automation import errors, semver, tagpolicy

TAGS = ["1.0.0", "1.1.0", "1.2.0-rc.1", "1.10.0", "v1.9.5", "2.0.0", "2.1.0-beta", "latest", "0.9"]


@pytest.mark.parametrize(("rng", "want"), [
    (">=1.0 <2.0", "1.10.0"),
    (">=1.0.0", "2.0.0"),
    ("1.x", "1.10.0"),
    ("1.1.*", "1.1.0"),
    ("~1.1", "1.1.0"),
    ("^1.1", "1.10.0"),
    ("^0.9", "0.9"),
    ("<1.0", "0.9"),
    (">1.9 <2", "1.10.0"),
    (">1.10 <2", None),  # past every 1.10.x
    ("<=1.9", "v1.9.5"),
    ("1.0.0 - 1.9.9", "v1.9.5"),
    ("=1.1.0 || =2.0.0", "2.0.0"),
    (">=1.0, <1.5, !=1.1.0", "1.0.0"),
    ("*", "2.0.0"),
    (">=1.2.0-0 <2.0.0", "1.10.0"),  # names a pre-release, but a release is newer
    (">=1.2.0-0 <1.3.0", "1.2.0-rc.1"),  # pre-releases allowed: the range names one
    (">=2.1.0-0", "2.1.0-beta"),
    (">=3", None),
])
def test_semver_ranges(rng: str, want: str | None) -> None:
    assert tagpolicy.latest(tagpolicy.parse(f"semver:{rng}"), TAGS) == want


def test_pre_releases_are_excluded_unless_the_range_names_one() -> None:
    r = semver.parse_range(">=1.0")
    assert not r.allows(semver.Version(2, 1, 0, ("beta",)))
    assert semver.parse_range(">=1.0.0-0").allows(semver.Version(2, 1, 0, ("beta",)))


def test_semver_precedence() -> None:
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
             "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"]
    versions = [semver.parse(t) for t in reversed(order)]
    assert [str(v) for v in sorted(versions, key=lambda v: v.key())] == order  # type: ignore[union-attr]


@pytest.mark.parametrize(("spec", "want"), [
    ("alphabetical:asc", "c"), ("alphabetical", "c"), ("alphabetical:desc", "a"),
])
def test_alphabetical(spec: str, want: str) -> None:
    assert tagpolicy.latest(tagpolicy.parse(spec), ["b", "a", "c"]) == want


@pytest.mark.parametrize(("spec", "want"), [("numerical:asc", "10"), ("numerical:desc", "-1")])
def test_numerical_orders_numbers_not_text(spec: str, want: str) -> None:
    # "9" > "10" alphabetically; a tag that is not a number is ignored (Flux fails instead)
    assert tagpolicy.latest(tagpolicy.parse(spec), ["9", "10", "1.5", "-1", "abc"]) == want


def test_filter_and_extract_order_the_extracted_value_and_choose_the_tag() -> None:
    tags = ["main-9-abc", "main-10-def", "dev-99-zzz", "main-x"]
    p = tagpolicy.parse("numerical:asc", r"^main-(?P<ts>[0-9]+)-(?P<sha>[a-z]+)$", "$ts")
    assert tagpolicy.ordered(p, tags) == ["main-9-abc", "main-10-def"]
    assert tagpolicy.latest(p, tags) == "main-10-def"
    # alphabetically "9" is after "10"
    by_text = tagpolicy.parse("alphabetical:asc", r"^main-(\d+)-", "${1}")
    assert tagpolicy.latest(by_text, tags) == "main-9-abc"
    # a filter alone keeps matching tags, ordered by the whole tag
    assert tagpolicy.latest(tagpolicy.parse("semver:>=1", r"^v"), ["v1.0.0", "2.0.0", "v1.2.0"]) == "v1.2.0"


def test_semver_with_extract() -> None:
    p = tagpolicy.parse("semver:^1", r"^app-(?P<v>.*)$", "$v")
    assert tagpolicy.latest(p, ["app-1.2.3", "app-1.10.0", "app-2.0.0", "other-1.99.0"]) == "app-1.10.0"


@pytest.mark.parametrize(("spec", "pattern", "extract", "message"), [
    ("semver:", "", "", "expected semver:<range>"),
    ("semver:>=banana", "", "", "is not a semver constraint"),
    ("numerical:up", "", "", "order 'up'"),
    ("newest", "", "", "expected semver"),
    ("alphabetical", "(", "", "not an RE2 pattern"),
    ("alphabetical", "^(?P<a>x)$", "$b", "no group named 'b'"),
    ("alphabetical", "", "$a", "needs a filter"),
])
def test_bad_policies_say_why(spec: str, pattern: str, extract: str, message: str) -> None:
    with pytest.raises(errors.PolicyError, match=message.replace("(", r"\(").replace("[", r"\[")):
        tagpolicy.parse(spec, pattern, extract)


def test_a_pinned_tag_and_everything_not_newer_is_never_proposed() -> None:
    p = tagpolicy.parse("semver:>=1.0")
    assert tagpolicy.latest(p, ["1.0.0", "1.1.0", "1.2.0"], pinned={"1.2.0"}) is None
    assert tagpolicy.latest(p, ["1.0.0", "1.1.0", "1.2.0", "1.3.0"], pinned={"1.2.0"}) == "1.3.0"
    # a pin the policy cannot order is just left out
    assert tagpolicy.latest(p, ["1.0.0", "1.1.0"], pinned={"weird"}) == "1.1.0"


def test_prefers() -> None:
    p = tagpolicy.parse("semver:>=1.0")
    assert tagpolicy.prefers(p, "1.2.0", "1.1.0")
    assert not tagpolicy.prefers(p, "1.1.0", "1.2.0")
    assert tagpolicy.prefers(p, "1.2.0", "latest")  # the current tag is outside the policy
