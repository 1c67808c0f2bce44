"""The inventory's text format: every legal namespace, name, group, kind and version round-trips
(generated with a fixed seed), ids stay unique, and v1 inventories (joined with "_", never
escaped) are read best-effort and rewritten as v2."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from reconciler import errors, inventory
from reconciler.apply import Applier
from reconciler.inventory import Entry

SEED = 20261129
N = 5000
_DNS = string.ascii_lowercase + string.digits
# Characters an RBAC name (a path segment: anything but "/", not "." or "..") may hold, with
# the ones that break naive formats over-represented: the separator, the escape character, the
# header mark, whitespace and line breaks of every kind, and unicode.
_TRICKY = "_%#:@.-~+=!$&'()*,;?[]{}<>|\\^`\"\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029 \u00a0\u3000" \
          "éßÅ名前ДжΩ🙂\u0301\ufeff\u200b\x00\x7f"


def _label(rng: random.Random, max_len: int = 63) -> str:
    n = rng.randint(1, max_len)
    if n == 1:
        return rng.choice(_DNS)
    middle = "".join(rng.choice(_DNS + "-") for _ in range(n - 2))
    return rng.choice(_DNS) + middle + rng.choice(_DNS)


def _subdomain(rng: random.Random) -> str:
    out = ".".join(_label(rng, rng.choice((3, 10, 63))) for _ in range(rng.randint(1, 4)))
    return out[:253].rstrip(".-") or "a"


def _segment(rng: random.Random) -> str:
    """A path-segment name: any characters but "/", and neither "." nor ".."."""
    pools = [_TRICKY, string.ascii_letters + string.digits, _DNS + "-."]
    out = []
    for _ in range(rng.randint(1, 40)):
        if rng.random() < 0.1:
            cp = rng.randint(0x80, 0x10FFFF)
            if not 0xD800 <= cp <= 0xDFFF:  # a str from JSON holds no surrogates (tested apart)
                out.append(chr(cp))
                continue
        out.append(rng.choice(rng.choice(pools)))
    name = "".join(out).replace("/", "_")
    return name if name not in (".", "..") else name + "_"


def _entry(rng: random.Random) -> Entry:
    ns = "" if rng.random() < 0.2 else _label(rng)
    group = "" if rng.random() < 0.3 else _subdomain(rng)
    kind = rng.choice(string.ascii_uppercase) + "".join(
        rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(0, 30)))
    version = f"v{rng.randint(1, 3)}" + rng.choice(["", f"alpha{rng.randint(1, 9)}",
                                                     f"beta{rng.randint(1, 9)}"])
    name = _segment(rng) if rng.random() < 0.6 else _subdomain(rng)
    return Entry(ns, name, group, kind, version)


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    rng = random.Random(SEED)
    made = [_entry(rng) for _ in range(N)]
    # Near-collisions: the same characters split differently between the fields.
    made += [Entry("a", "b_c", "", "K", "v1"), Entry("a", "b", "c", "K", "v1"),
             Entry("", "a_b", "", "K", "v1"), Entry("a", "b%5Fc", "", "K", "v1"),
             Entry("a", "b%c", "", "K", "v1"), Entry("a", "%25", "", "K", "v1"),
             Entry("", "#pushgate-inventory v2", "", "ClusterRole", "v1"),
             Entry("ns", "read_only", "rbac.authorization.k8s.io", "Role", "v1"),
             Entry("ns", "_", "", "Role", "v1"), Entry("ns", "__", "", "Role", "v1")]
    return made


def test_every_generated_entry_round_trips(entries: list[Entry]) -> None:
    names_with = {c: sum(1 for e in entries if c in e.name) for c in "_.-:%@#\n "}
    assert all(count > 50 for count in names_with.values()), names_with  # the generator is not tame
    assert sum(1 for e in entries if not e.name.isascii()) > 500
    for e in entries:
        line = e.encode()
        assert Entry.decode(line) == e, (e, line)
        assert line.count("_") == 4 and line == line.strip() and "\n" not in line
        assert not line.startswith("#") and len(line.splitlines()) == 1, line


def test_ids_are_unique_per_object_and_ignore_the_version(entries: list[Entry]) -> None:
    by_id: dict[str, tuple[str, str, str, str]] = {}
    for e in entries:
        key = (e.namespace, e.name, e.group, e.kind)
        assert by_id.setdefault(e.id, key) == key, f"{e.id!r} is both {by_id[e.id]} and {key}"
        assert Entry(*key, version="v9").id == e.id
    assert len(by_id) == len({(e.namespace, e.name, e.group, e.kind) for e in entries})
    assert Entry("a", "b_c", "", "K").id != Entry("a_b", "c", "", "K").id


def test_a_whole_inventory_round_trips(entries: list[Entry]) -> None:
    text = inventory.encode(entries)
    assert text.split("\n")[0] == inventory.HEADER
    assert sorted(inventory.decode(text)) == sorted(set(entries))
    # Line endings rewritten on the way (an editor, a YAML block) change nothing.
    assert sorted(inventory.decode(text.replace("\n", "\r\n") + "\n\n")) == sorted(set(entries))
    assert inventory.decode(inventory.encode([])) == []
    # And the diff over decoded entries prunes exactly what left.
    kept = entries[::2]
    gone = inventory.diff(inventory.decode(text), kept)
    assert {e.id for e in gone} == {e.id for e in entries} - {e.id for e in kept}


def test_lone_surrogates_round_trip_too() -> None:
    e = Entry("ns", "a\ud800b", "", "Role", "v1")
    assert Entry.decode(e.encode()) == e and e.encode().isascii()


def test_ordinary_entries_read_as_they_did_in_v1() -> None:
    """DNS names, no "_": the v2 line is the v1 line, so an older reconciler reads it."""
    rng = random.Random(SEED + 1)
    for _ in range(1000):
        e = Entry(_label(rng), _subdomain(rng), rng.choice(["", _subdomain(rng)]), "Deployment", "v1")
        assert e.encode() == "_".join([e.namespace, e.name, e.group, e.kind, e.version])
        ns, name, group, kind, version = e.encode().split("_", 4)  # the v1 decoder
        assert Entry(ns, name, group, kind, version) == e
    assert Entry("shop", "web", "apps", "Deployment", "v1").id == "shop_web_apps_Deployment"


# -- v1 (no header) --------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "want"), [
    ("shop_read_only_rbac.authorization.k8s.io_Role_v1",
     Entry("shop", "read_only", "rbac.authorization.k8s.io", "Role", "v1")),
    ("_cluster_admin_view_rbac.authorization.k8s.io_ClusterRole_v1",
     Entry("", "cluster_admin_view", "rbac.authorization.k8s.io", "ClusterRole", "v1")),
    ("shop_web_apps_Deployment_v1", Entry("shop", "web", "apps", "Deployment", "v1")),
    ("shop_cfg__ConfigMap_v1", Entry("shop", "cfg", "", "ConfigMap", "v1")),
    ("_shop__Namespace_v1", Entry("", "shop", "", "Namespace", "v1")),
    ("shop___a__b____Role_v1beta1", Entry("shop", "__a__b__", "", "Role", "v1beta1")),
    ("shop_a%b:c@d_rbac.authorization.k8s.io_Role_v1",  # v1 never escaped: "%" is literal
     Entry("shop", "a%b:c@d", "rbac.authorization.k8s.io", "Role", "v1")),
])
def test_v1_lines_are_read_with_the_name_the_only_field_holding_underscores(line: str,
                                                                          want: Entry) -> None:
    assert inventory.decode(line) == [want]
    assert inventory.decode(f"\n  {line}  \r\n") == [want]


def test_v1_lines_that_cannot_be_read_are_skipped() -> None:
    text = "\n".join(["nounderscore", "a_b_c", "a_b_c_d", "shop_web_apps_Deployment_v1", "   "])
    assert inventory.decode(text) == [Entry("shop", "web", "apps", "Deployment", "v1")]


def test_v1_inventories_of_generated_entries_are_read_back() -> None:
    """Every v1 line a legal object gave (the name the only field with "_"), whatever its name."""
    rng = random.Random(SEED + 2)
    made = []
    for _ in range(2000):
        e = _entry(rng)
        made.append(Entry(e.namespace, e.name.replace("\n", "_"), e.group, e.kind, e.version))
    v1 = "\n".join("_".join([e.namespace, e.name, e.group, e.kind, e.version]) for e in made)
    assert sum(1 for e in made if "_" in e.name) > 150
    # Lines are split at "\n" only (a name may hold "\r" or U+2028) and the stripped edges are
    # the namespace and the version, which hold no whitespace: every field comes back exactly.
    assert inventory.decode(v1) == made


def test_v1_is_migrated_on_the_next_write() -> None:
    v1 = "\n".join(["shop_read_only_rbac.authorization.k8s.io_Role_v1", "shop_cfg__ConfigMap_v1"])
    entries = inventory.decode(v1)
    v2 = inventory.encode(entries)
    assert v2.split("\n") == [inventory.HEADER, "shop_cfg__ConfigMap_v1",
                              "shop_read%5Fonly_rbac.authorization.k8s.io_Role_v1"]
    assert inventory.decode(v2) == sorted(entries)
    # Without the migration (v2 read as v1) the escaped name would be taken literally: the
    # header is what tells the two apart.
    assert inventory.decode(v2.split("\n", 1)[1]) != sorted(entries)


def test_a_newer_format_is_refused_not_guessed() -> None:
    with pytest.raises(inventory.FormatError, match="v3"):
        inventory.decode("#pushgate-inventory v3\nshop_web_apps_Deployment_v1")
    # Malformed v2 lines are skipped (an object orphaned at worst, never a wrong one deleted).
    text = f"{inventory.HEADER}\nshop_web_apps_Deployment_v1\nbroken_line\na_b_c_d_e_f"
    assert inventory.decode(text) == [Entry("shop", "web", "apps", "Deployment", "v1")]


def test_the_applier_stops_rather_than_guess_a_newer_inventory() -> None:
    class OneParent:
        field_manager = "pushgate"

        def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
            return {"data": {"inventory": "#pushgate-inventory v3\nshop_web_apps_Deployment_v1"}}

    applier = Applier(OneParent(), branch="main", inventory_namespace="pg")  # type: ignore[arg-type]
    with pytest.raises(errors.Permanent) as info:
        applier.read_inventory()
    assert info.value.reason == "InventoryFormat" and "v3" in info.value.message
