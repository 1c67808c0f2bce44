"""Gatekeeper ConstraintTemplates and Constraints, evaluated at push like in the cluster.

Called by `policies.load` (templates and constraints found in the policy directory become part
of the policy set) and by the gate (which objects each Constraint matches, and the input its
template sees). Follows Gatekeeper v3.23 (pkg/target, pkg/mutation/match and the constraint
framework's Rego driver):

- A template's Rego (v0 unless `source.version: v1`; v0 is turned into v1 by OPA's own
  `opa fmt --v0-v1`, since the embedded engine reads only v1) gets the package
  `pushgate.gatekeeper.<Kind>`, its `libs` (packages `lib.*`) move under it, and
  `data.inventory` becomes `data.pushgate.push.inventory`: the pushed tree's objects, shaped as
  Gatekeeper's cache (`cluster[<apiVersion>][<kind>][<name>]`,
  `namespace[<ns>][<apiVersion>][<kind>][<name>]`). Any other `data` reference is refused, as
  Gatekeeper refuses it.
- The input is `{"review": <AdmissionRequest>, "parameters": spec.parameters or {}}` with
  `operation: CREATE` (every object is judged as if created: the strictest reading) and
  `namespaceObject`, the object's Namespace when the pushed tree holds it.
- Match: kinds, scope, namespaces, excludedNamespaces (prefix/suffix `*`), labelSelector,
  namespaceSelector (the Namespace must be in the pushed tree; if it is not, the Constraint is
  applied: fail closed), name, source.
- enforcementAction deny (refuses), warn (a warning), dryrun (reported, never blocking).

Refused at start, never skipped: templates whose only code is CEL (K8sNativeValidation), that call
`external_data`, other targets, mutation and expansion objects, external data providers,
`scoped` enforcement without a rule for gator, parameters their template's schema rejects.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pushgate.core import manifests
from pushgate.gate import opacli, regofiles

TARGET = "admission.k8s.gatekeeper.sh"
PACKAGE = "pushgate.gatekeeper"
TEMPLATE_GROUP = "templates.gatekeeper.sh"
CONSTRAINT_GROUP = "constraints.gatekeeper.sh"
ACTIONS = ("deny", "warn", "dryrun")
# Gatekeeper API groups pushgate does not evaluate at push: refused, never silently skipped.
_UNSUPPORTED_GROUPS = {
    "mutations.gatekeeper.sh": "mutation (Assign, AssignMetadata, ModifySet, AssignImage)",
    "expansion.gatekeeper.sh": "expansion templates",
    "externaldata.gatekeeper.sh": "external data providers",
}
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_PACKAGE_LINE = re.compile(r"^package[ \t]+([A-Za-z_][\w.]*)[ \t]*$", re.M)
_DATA_LIB = re.compile(r"(?<![\w.])data\.lib(?![\w])")
_DATA_INVENTORY = re.compile(r"(?<![\w.])data\.inventory(?![\w])")
_DATA_REF = re.compile(r"(?<![\w.])data(?![\w])")
_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_CONVERT_TIMEOUT = 30.0


class GatekeeperError(Exception):
    """A template or constraint pushgate cannot evaluate faithfully; names the file and why."""


@dataclass(frozen=True)
class Template:
    kind: str
    path: str  # relative to the policy directory
    modules: tuple[tuple[str, str], ...]  # (module name, Rego v1 source), rewritten
    reads_inventory: bool

    @property
    def package(self) -> str:
        return f"{PACKAGE}.{self.kind}"

    @property
    def entrypoint(self) -> str:
        return f"{self.package.replace('.', '/')}/violation"


@dataclass(frozen=True)
class Constraint:
    kind: str
    name: str
    path: str
    line: int
    match: dict[str, Any]
    parameters: Any
    action: str  # deny | warn | dryrun

    @property
    def rule(self) -> str:
        """How a violation names it: `[K8sRequiredLabels/must-have-owner]`."""
        return f"{self.kind}/{self.name}"

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.kind, self.name, self.match, self.parameters,
                                          self.action], sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class GatekeeperSet:
    templates: tuple[Template, ...]
    constraints: tuple[Constraint, ...]

    def template(self, kind: str) -> Template:
        return next(t for t in self.templates if t.kind == kind)

    @property
    def version(self) -> str:
        h = hashlib.sha256()
        for t in self.templates:
            h.update(json.dumps([t.kind, t.modules]).encode())
        for c in self.constraints:
            h.update(c.digest.encode())
        return h.hexdigest()

    def describe(self) -> list[str]:
        lines = [f"gatekeeper: {len(self.templates)} templates, {len(self.constraints)} constraints"]
        for c in self.constraints:
            lines.append(f"  {c.rule} ({c.action}) from {c.path}")
        return lines


def load(directory: str, opa_bin: str | None = None) -> GatekeeperSet | None:
    """The templates and constraints in the YAML/JSON files of `directory` (None if there are
    none). GatekeeperError names the file and what pushgate cannot evaluate."""
    templates: list[tuple[str, dict[str, Any]]] = []
    constraints: list[tuple[str, int, dict[str, Any]]] = []
    for rel, line, doc in _documents(directory):
        group = str(doc.get("apiVersion", "")).split("/", 1)[0]
        if group in _UNSUPPORTED_GROUPS:
            raise GatekeeperError(f"{rel}:{line}: {doc.get('kind')} ({group}): pushgate does not "
                                  f"evaluate {_UNSUPPORTED_GROUPS[group]} at push; remove it from "
                                  f"the policy set")
        if group == TEMPLATE_GROUP and doc.get("kind") == "ConstraintTemplate":
            templates.append((rel, doc))
        elif group == CONSTRAINT_GROUP:
            constraints.append((rel, line, doc))
    if not templates and not constraints:
        return None
    opa = opa_bin or opacli.find()
    built: dict[str, Template] = {}
    schemas: dict[str, Any] = {}
    for rel, doc in templates:
        t, schema = _template(rel, doc, opa)
        if t.kind in built and built[t.kind].modules == t.modules and schemas[t.kind] == schema:
            continue  # the same template twice (gator's fixtures repeat them): one
        if t.kind in built:
            raise GatekeeperError(f"{rel}: a second template for kind {t.kind} "
                                  f"(first in {built[t.kind].path})")
        built[t.kind] = t
        schemas[t.kind] = schema
    made: list[Constraint] = []
    seen: set[tuple[str, str]] = set()
    for rel, line, doc in constraints:
        c = _constraint(rel, line, doc, built, schemas)
        if (c.kind, c.name) in seen:
            raise GatekeeperError(f"{rel}:{line}: constraint {c.rule} is defined twice")
        seen.add((c.kind, c.name))
        made.append(c)
    return GatekeeperSet(tuple(built[k] for k in sorted(built)),
                         tuple(sorted(made, key=lambda c: (c.kind, c.name))))


def _documents(directory: str) -> Iterable[tuple[str, int, dict[str, Any]]]:
    for rel, full in regofiles.documents(directory):
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError as e:
            raise GatekeeperError(f"{rel}: cannot read: {e}") from e
        if regofiles.GATEKEEPER_MARK not in data:
            continue  # not ours (a data file, an enforcement override): left to its reader
        loaded = manifests.load(rel, data)  # the gate's own bounded, safe loader
        if loaded.problems:
            raise GatekeeperError(str(loaded.problems[0]))
        for m in loaded.manifests:
            if "gatekeeper.sh" in str(m.obj.get("apiVersion", "")):
                yield rel, m.line, m.obj


def _template(rel: str, doc: dict[str, Any], opa: str | None) -> tuple[Template, Any]:
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    crd = ((spec.get("crd") or {}).get("spec") or {})
    kind = str(((crd.get("names") or {}).get("kind")) or "")
    if not _KIND.match(kind):
        raise GatekeeperError(f"{rel}: ConstraintTemplate {meta.get('name')!r}: "
                              f"spec.crd.spec.names.kind {kind!r} is not a valid kind")
    if meta.get("name") != kind.lower():
        raise GatekeeperError(f"{rel}: ConstraintTemplate {meta.get('name')!r}: its name must be "
                              f"the lowercase of its kind ({kind.lower()!r}), as Gatekeeper requires")
    schema = ((crd.get("validation") or {}).get("openAPIV3Schema"))
    targets = spec.get("targets") or []
    if len(targets) != 1 or not isinstance(targets[0], dict) or targets[0].get("target") != TARGET:
        names = [t.get("target") for t in targets if isinstance(t, dict)]
        raise GatekeeperError(f"{rel}: template {kind}: exactly one target {TARGET} is supported "
                              f"(found {names})")
    target = targets[0]
    rego, libs, version = target.get("rego") or "", list(target.get("libs") or []), "v0"
    engines = []
    for code in target.get("code") or []:
        engine = (code or {}).get("engine")
        engines.append(engine)
        if engine == "Rego":
            source = code.get("source") or {}
            rego = source.get("rego") or rego
            libs = list(source.get("libs") or libs)
            version = str(source.get("version") or "v0")
    if not rego:
        which = f" (its code is {', '.join(map(str, engines))})" if engines else ""
        raise GatekeeperError(f"{rel}: template {kind} has no Rego{which}: CEL "
                              f"(K8sNativeValidation) templates are not evaluated at push; "
                              f"add a Rego version of the rule or remove the template")
    sources = [("template", rego)] + [(f"lib_{i}", lib) for i, lib in enumerate(libs)]
    modules: list[tuple[str, str]] = []
    reads_inventory = False
    for name, src in sources:
        if not isinstance(src, str):
            raise GatekeeperError(f"{rel}: template {kind}: {name} is not a string")
        v1 = src if version == "v1" else _to_v1(src, f"{rel} ({kind} {name})", opa)
        v1 = _assignments(v1, opa)
        code = _COMMENT.sub("", _STRINGS.sub('""', v1))
        if re.search(r"(?<![\w.])external_data\s*\(", code):
            raise GatekeeperError(f"{rel}: template {kind} calls external_data: external data "
                                  f"providers are not evaluated at push")
        network = re.search(r"(?<![\w.])(http\.send|net\.lookup_ip_addr)\s*\(", code)
        if network:
            raise GatekeeperError(f"{rel}: template {kind} calls {network.group(1)}: a push is "
                                  f"never judged by what a network call answers (Gatekeeper "
                                  f"disables http.send too)")
        pkg = _PACKAGE_LINE.search(v1)
        if pkg is None:
            raise GatekeeperError(f"{rel}: template {kind}: {name} has no package declaration")
        if name == "template":
            new_pkg = f"{PACKAGE}.{kind}"
        elif pkg.group(1) == "lib" or pkg.group(1).startswith("lib."):
            new_pkg = f"{PACKAGE}.{kind}.{pkg.group(1)}"
        else:
            raise GatekeeperError(f"{rel}: template {kind}: library package {pkg.group(1)!r} "
                                  f"must start with 'lib.', as Gatekeeper requires")
        reads_inventory = reads_inventory or bool(_DATA_INVENTORY.search(code))
        stripped = _DATA_INVENTORY.sub("", _DATA_LIB.sub("", code))
        if _DATA_REF.search(stripped.replace(pkg.group(0), "")):
            raise GatekeeperError(f"{rel}: template {kind}: {name} reads data other than "
                                  f"data.lib and data.inventory, which Gatekeeper does not allow")
        out = v1[:pkg.start()] + f"package {new_pkg}" + v1[pkg.end():]
        out = _DATA_LIB.sub(f"data.{PACKAGE}.{kind}.lib", out)
        out = _DATA_INVENTORY.sub("data.pushgate.push.inventory", out)
        modules.append((f"gatekeeper/{rel}#{kind}/{name}.rego", out))
    if not re.search(r"^violation\b", modules[0][1], re.M):
        raise GatekeeperError(f"{rel}: template {kind} has no rule named violation")
    return Template(kind, rel, tuple(modules), reads_inventory), schema


# Built-ins Rego v1 removed, which v0 templates (Gatekeeper's and its library's) still call:
# renamed, or given a same-meaning helper in the module before OPA converts it.
_DEPRECATED = (
    (re.compile(r"(?<![\w.])re_match\("), "regex.match("),
    (re.compile(r"(?<![\w.])net\.cidr_overlap\("), "net.cidr_contains("),
    (re.compile(r"(?<![\w.])any\("), "pushgate_any("),
    (re.compile(r"(?<![\w.])all\("), "pushgate_all("),
    (re.compile(r"(?<![\w.])set_diff\("), "pushgate_set_diff("),
)
_HELPERS = {
    "pushgate_any(": "pushgate_any(xs) = r { r := count([x | x := xs[_]; x == true]) > 0 }",
    "pushgate_all(": "pushgate_all(xs) = r { r := count([x | x := xs[_]; x != true]) == 0 }",
    "pushgate_set_diff(": "pushgate_set_diff(a, b) = r { r := a - b }",
}


def _without_deprecated(src: str) -> str:
    for pattern, new in _DEPRECATED:
        src = pattern.sub(new, src)
    helpers = [rule for call, rule in _HELPERS.items() if call in src]
    return src + ("\n\n" + "\n\n".join(helpers) + "\n" if helpers else "")


_UNIFY = re.compile(r"(?m)(^[ \t]+|(?<=[|;])[ \t]*)([A-Za-z_]\w*)([ \t]*)=(?![=])")
_HEAD_NAME = re.compile(r"(?m)^([A-Za-z_]\w*)")
_IMPORT = re.compile(r"(?m)^import[ \t]+([\w.\[\]\"]+)(?:[ \t]+as[ \t]+(\w+))?")


def _assignments(src: str, opa: str | None) -> str:
    """`x = expr` (unification) with a fresh, local `x` written as `x := expr`. The embedded
    engine cannot unify some such statements (rego-cpp: "Unable to unify due to cycle" when the
    right side reads an outer variable). Rewritten only where it means the same: every use of
    `x` in its rule lies inside the innermost brackets (comprehension or body) holding the
    statement, `x` names no rule or import, and OPA's compiler (`opa check`) accepts the result;
    otherwise the module is kept as it was (and refused if the engine cannot compile it)."""
    reserved = set(_HEAD_NAME.findall(src)) | {"input", "data", "_"}
    for path, alias in _IMPORT.findall(src):
        reserved.add(alias or path.rsplit(".", 1)[-1])
    # strings and comments blanked, same length: positions stay, their words are not uses
    code = _COMMENT.sub(lambda m: " " * len(m.group(0)), _STRINGS.sub(
        lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', src))
    rules = [m.start() for m in re.finditer(r"(?m)^\S", code)] + [len(src)]

    def fix(m: re.Match[str]) -> str:
        name = m.group(2)
        if name in reserved:
            return m.group(0)
        at = m.start(2)
        start = max(r for r in rules if r <= at)
        end = min(r for r in rules if r > at)
        if code[at:at + len(name)] != name:
            return m.group(0)  # inside a string or comment
        lo, hi = _enclosing(code, at, start, end)
        uses = [u.start() for u in re.finditer(rf"(?<![\w.]){re.escape(name)}(?!\w)", code[start:end])]
        if any(not lo <= start + u < hi for u in uses):
            return m.group(0)
        return f"{m.group(1)}{name}{m.group(3)}:="

    out = _UNIFY.sub(fix, src)
    if out == src or opa is None or not _opa_accepts(out, opa):
        return src
    return out


def _enclosing(src: str, at: int, start: int, end: int) -> tuple[int, int]:
    """The innermost (...)/[...]/{...} around `at` within [start, end): its span."""
    depth = 0
    lo = start
    for i in range(at - 1, start - 1, -1):
        ch = src[i]
        if ch in ")]}":
            depth += 1
        elif ch in "([{":
            if depth == 0:
                lo = i
                break
            depth -= 1
    else:
        return start, end
    depth = 0
    for i in range(at, end):
        ch = src[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return lo, i + 1
            depth -= 1
    return lo, end


def _opa_on(src: str, opa: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`opa ARGS module.rego` over `src`, written to a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="pushgate-gk-") as d:
        with open(os.path.join(d, "module.rego"), "w", encoding="utf-8") as f:
            f.write(src)
        return opacli.run(opa, [*args, "module.rego"], d, _CONVERT_TIMEOUT)


def _opa_accepts(src: str, opa: str) -> bool:
    try:
        return _opa_on(src, opa, ["check"]).returncode == 0
    except opacli.OpaUnavailable:
        return False


def _to_v1(src: str, what: str, opa: str | None) -> str:
    """Rego v0 -> v1 by OPA itself (`opa fmt --v0-v1`)."""
    src = _without_deprecated(src)
    if opa is None:
        raise GatekeeperError(
            f"{what}: Gatekeeper templates are Rego v0 and need the opa binary to be read "
            f"(set PUSHGATE_OPA, or run scripts/tools.sh to build the pinned one)")
    try:
        done = _opa_on(src, opa, ["fmt", "--v0-v1"])
    except opacli.OpaUnavailable as e:
        raise GatekeeperError(f"{what}: {e}") from e
    if done.returncode != 0:
        err = (done.stderr or done.stdout).replace("module.rego", "rego").strip().splitlines()
        raise GatekeeperError(f"{what}: not valid Rego: {'; '.join(err[:3])}")
    return done.stdout


def _constraint(rel: str, line: int, doc: dict[str, Any], templates: dict[str, Template],
                schemas: dict[str, Any]) -> Constraint:
    kind = str(doc.get("kind") or "")
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    where = f"{rel}:{line}: constraint {kind}/{name}"
    if kind not in templates:
        raise GatekeeperError(f"{where}: no ConstraintTemplate defines kind {kind!r} "
                              f"(known: {', '.join(sorted(templates)) or 'none'})")
    if not name:
        raise GatekeeperError(f"{where}: metadata.name is missing")
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise GatekeeperError(f"{where}: spec is not a map")
    action = str(spec.get("enforcementAction") or "deny")
    if action == "scoped":
        action = _scoped_action(where, spec.get("scopedEnforcementActions"))
    if action not in ACTIONS:
        raise GatekeeperError(f"{where}: enforcementAction {action!r} is not one of "
                              f"{', '.join(ACTIONS)}, scoped")
    match = spec.get("match") or {}
    if not isinstance(match, dict):
        raise GatekeeperError(f"{where}: spec.match is not a map")
    _check_match(where, match)
    params = spec.get("parameters")
    if params is None:
        params = {}
    schema = schemas.get(kind)
    if schema:
        params = _with_defaults(_plain_schema(schema), params)
        _validate_parameters(where, params, schema)
    return Constraint(kind, name, rel, line, match, params, action)


def _scoped_action(where: str, scoped: Any) -> str:
    """`enforcementAction: scoped`: the strongest action of the rules that name gator's
    enforcement point (or `*`); none -> not enforced at push (dryrun, reported)."""
    found = []
    for rule in scoped or []:
        points = [str((p or {}).get("name")) for p in (rule or {}).get("enforcementPoints") or []]
        if "*" in points or "gator.gatekeeper.sh" in points or not points:
            found.append(str((rule or {}).get("action") or ""))
    for action in ACTIONS:
        if action in found:
            return action
    if found:
        raise GatekeeperError(f"{where}: scopedEnforcementActions {found} hold no action of "
                              f"{', '.join(ACTIONS)}")
    return "dryrun"


_MATCH_KEYS = {"kinds", "scope", "namespaces", "excludedNamespaces", "labelSelector",
               "namespaceSelector", "name", "source"}


def _check_match(where: str, match: dict[str, Any]) -> None:
    unknown = sorted(set(match) - _MATCH_KEYS)
    if unknown:
        raise GatekeeperError(f"{where}: spec.match.{unknown[0]} is not supported at push "
                              f"(supported: {', '.join(sorted(_MATCH_KEYS))})")
    if match.get("scope") not in (None, "*", "Cluster", "Namespaced"):
        raise GatekeeperError(f"{where}: spec.match.scope {match['scope']!r} is not *, Cluster "
                              f"or Namespaced")
    if match.get("source") not in (None, "", "All", "Original", "Generated"):
        raise GatekeeperError(f"{where}: spec.match.source {match['source']!r} is not All, "
                              f"Original or Generated")
    for key in ("labelSelector", "namespaceSelector"):
        sel = match.get(key)
        if sel is None:
            continue
        try:
            selector_matches(sel, {})
        except ValueError as e:
            raise GatekeeperError(f"{where}: spec.match.{key}: {e}") from None


def _validate_parameters(where: str, params: Any, schema: Any) -> None:
    import jsonschema  # type: ignore[import-untyped]

    schema = _plain_schema(schema)
    try:
        jsonschema.Draft7Validator.check_schema(schema)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(params), key=str)
    except jsonschema.SchemaError as e:
        raise GatekeeperError(f"{where}: its template's parameter schema is invalid: "
                              f"{e.message}") from None
    if errors:
        first = errors[0]
        at = ".".join(str(p) for p in first.absolute_path) or "(root)"
        raise GatekeeperError(f"{where}: spec.parameters.{at}: {first.message}")


def _with_defaults(schema: Any, value: Any) -> Any:
    """Structural-schema defaulting, as the API server does for the constraint's CRD (and gator
    likewise): a missing property with a `default` gets it, at every level."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if key not in out and isinstance(sub, dict) and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = _with_defaults(sub, out[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in out:
                if key not in (schema.get("properties") or {}):
                    out[key] = _with_defaults(extra, out[key])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_with_defaults(schema["items"], v) for v in value]
    return value


def _plain_schema(schema: Any) -> Any:
    """The OpenAPI schema as JSON Schema: Kubernetes' x- extensions dropped."""
    if isinstance(schema, dict):
        return {k: _plain_schema(v) for k, v in schema.items() if not str(k).startswith("x-")}
    if isinstance(schema, list):
        return [_plain_schema(v) for v in schema]
    return schema


# -- matching -------------------------------------------------------------------------------

def wildcard(pattern: str, candidate: str) -> bool:
    """Gatekeeper's Wildcard: `*x*` contains, `*x` suffix, `x*` prefix, else equal."""
    if pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 1:
        return pattern[1:-1] in candidate
    if pattern.startswith("*"):
        return candidate.endswith(pattern[1:])
    if pattern.endswith("*"):
        return candidate.startswith(pattern[:-1])
    return pattern == candidate


def selector_matches(selector: Any, labels: dict[str, Any]) -> bool:
    """metav1.LabelSelector semantics; ValueError for a selector Kubernetes would refuse."""
    if not isinstance(selector, dict):
        raise ValueError("a label selector must be a map")
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, dict):
        raise ValueError("matchLabels must be a map")
    for k, v in match_labels.items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            raise ValueError("matchExpressions entries must be maps")
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn") and not values:
            raise ValueError(f"operator {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise ValueError(f"operator {op} takes no values")
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"operator {op!r} is not In, NotIn, Exists or DoesNotExist")
        if not ok:
            return False
    return True


def _group_version_kind(obj: dict[str, Any]) -> tuple[str, str, str]:
    api = str(obj.get("apiVersion") or "")
    group, _, version = api.rpartition("/")
    return group, version, str(obj.get("kind") or "")


def _labels(obj: dict[str, Any] | None) -> dict[str, Any]:
    meta = (obj or {}).get("metadata") or {}
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def matches(c: Constraint, obj: dict[str, Any], ns_obj: dict[str, Any] | None) -> bool:
    """Gatekeeper's match (pkg/mutation/match) for an object of the pushed tree; `ns_obj` is
    its Namespace when the tree holds it."""
    m = c.match
    group, _, kind = _group_version_kind(obj)
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    is_ns = kind == "Namespace" and group == ""
    kinds = m.get("kinds") or []
    if kinds and not any(
            (not k.get("kinds") or "*" in k["kinds"] or kind in k["kinds"])
            and (not k.get("apiGroups") or "*" in k["apiGroups"] or group in k["apiGroups"])
            for k in kinds if isinstance(k, dict)):
        return False
    has_ns = bool(namespace) or ns_obj is not None
    scope = m.get("scope") or "*"
    if scope == "Cluster" and not (is_ns or not has_ns):
        return False
    if scope == "Namespaced" and not (not is_ns and has_ns):
        return False
    ns_name = name if is_ns else namespace
    if m.get("namespaces") and ns_name and not any(wildcard(str(p), ns_name) for p in m["namespaces"]):
        return False
    if m.get("excludedNamespaces") and ns_name and any(
            wildcard(str(p), ns_name) for p in m["excludedNamespaces"]):
        return False
    if m.get("labelSelector") is not None and not selector_matches(m["labelSelector"], _labels(obj)):
        return False
    sel = m.get("namespaceSelector")
    if sel is not None and (is_ns or namespace):
        if is_ns:
            if not selector_matches(sel, _labels(obj)):
                return False
        elif ns_obj is not None and not selector_matches(sel, _labels(ns_obj)):
            return False
        # a namespaced object whose Namespace is not in the tree: applied (fail closed)
    if m.get("name"):
        pattern = str(m["name"])
        generate = str(meta.get("generateName") or "")
        if not (wildcard(pattern, name) or (generate and _generate_matches(pattern, generate))):
            return False
    return m.get("source") in (None, "", "All", "Original")


def _generate_matches(pattern: str, generate: str) -> bool:
    if pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 1:
        return pattern[1:-1] in generate
    if pattern.endswith("*"):
        return generate.startswith(pattern[:-1])
    return False


# -- input ----------------------------------------------------------------------------------

def review(obj: dict[str, Any], ns_obj: dict[str, Any] | None) -> dict[str, Any]:
    """The AdmissionRequest Gatekeeper builds for an object (pkg/target), as JSON."""
    group, version, kind = _group_version_kind(obj)
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {
        "uid": "",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": "", "version": "", "resource": ""},
        "operation": "CREATE",
        "userInfo": {},
        "object": obj,
        "oldObject": None,
        "options": None,
        "namespaceObject": ns_obj,
    }
    if meta.get("name"):
        out["name"] = meta["name"]
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    return out


def inventory(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`data.inventory` as Gatekeeper's sync cache holds it, from the pushed tree's objects."""
    inv: dict[str, Any] = {"cluster": {}, "namespace": {}}
    for obj in objects:
        group, version, kind = _group_version_kind(obj)
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not version or not kind or not name:
            continue
        gv = f"{group}/{version}" if group else version
        ns = str(meta.get("namespace") or "")
        base = inv["cluster"] if not ns else inv["namespace"].setdefault(ns, {})
        base.setdefault(gv, {}).setdefault(kind, {})[name] = obj
    return inv


def namespaces(objects: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Namespace objects of the tree, by name."""
    return {str((o.get("metadata") or {}).get("name")): o for o in objects
            if o.get("kind") == "Namespace" and o.get("apiVersion") == "v1"}


def messages(value: Any) -> list[tuple[str, Any]]:
    """A template's `violation` set as (msg, details) pairs, like the framework's hook. Anything
    but a set of results (a complete rule's object, a string) is a problem of its own, never
    read as "no violation"."""
    if not isinstance(value, list):
        return [(f"template's violation rule is not a set of results: {json.dumps(value)[:200]}", {})]
    out = []
    for r in value:
        if isinstance(r, dict) and "msg" in r:
            out.append((str(r["msg"]), r.get("details", {})))
        else:
            out.append((f"template returned a violation without msg: {json.dumps(r)[:200]}", {}))
    return out
