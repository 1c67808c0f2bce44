"""Per-rule enforcement overrides: `enforcement.yaml` at the root of a policy directory.

Loaded with the policy set by `pushgate.gate.policysource` (for `--policies DIR` and for every
policy commit of `policies.git` alike) and applied by the git server's gate adapter, by the
policy push check and by `pushgate validate`, after the gate has decided: the gate's caches hold
what the policies say, this says what it counts for. Pure apart from reading the one file.

    # enforcement.yaml
    rules:
      pushgate.k8s.labels/deny: warn     # its failures are reported as warnings
      pushgate.k8s.secrets: off          # every rule of the package: results dropped
      main/warn_no_owner: deny           # its warnings refuse the push

A key is a rule as reports name it (`<package>/<rule>`, or `<Kind>/<name>` for a Gatekeeper
constraint) or a package or constraint kind (every rule in it; a rule's own entry wins).
Actions: `deny` (its results are errors), `warn` (warnings) or `off` (dropped). Keys that name
no rule or package of the policy set are refused, so a typo cannot silently leave a rule
enforced. Only policy rules are overridden: schema, YAML and live-check problems are not rules
of the policy set.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pushgate.core import violations as pv
from pushgate.core import yamlsafe
from pushgate.gate import policies

FILE = "enforcement.yaml"
ACTIONS = ("deny", "warn", "off")
_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class Enforcement:
    rules: Mapping[str, str] = field(default_factory=dict)  # rule or package -> action

    @property
    def digest(self) -> str:
        """"" without overrides; else what changes a verdict's policy version."""
        if not self.rules:
            return ""
        return hashlib.sha256(json.dumps(dict(self.rules), sort_keys=True).encode()).hexdigest()

    def action(self, rule: str) -> str | None:
        """The override for a reported rule id, None when there is none."""
        if rule in self.rules:
            return self.rules[rule]
        package = rule.rpartition("/")[0]
        return self.rules.get(package) if package else None

    def describe(self) -> list[str]:
        return [f"  enforcement: {k} -> {v}" for k, v in sorted(self.rules.items())]


NONE = Enforcement()


def load(directory: str, policy_set: policies.PolicySet) -> Enforcement:
    """The overrides of `directory` (NONE when it has no enforcement.yaml); PolicyError names
    the file, line and problem."""
    path = os.path.join(directory, FILE)
    if not os.path.isfile(path):
        return NONE
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise policies.PolicyError(f"{FILE}: cannot read: {e}") from e
    if len(data) > _MAX_BYTES:
        raise policies.PolicyError(f"{FILE}: larger than {_MAX_BYTES} bytes")
    parsed = yamlsafe.parse_yaml(FILE, text, max_documents=2, max_depth=8, max_alias_expansions=0)
    if parsed.problems:
        raise policies.PolicyError(str(parsed.problems[0]))
    if len(parsed.documents) > 1:
        raise policies.PolicyError(f"{FILE}: expected one YAML document")
    if not parsed.documents:
        return NONE
    doc, span = parsed.documents[0].value, parsed.documents[0].span
    if not isinstance(doc, dict) or set(doc) - {"rules"}:
        raise policies.PolicyError(f"{FILE}:{span.line}: expected a mapping with one key, 'rules' "
                                   f"(rule or package -> deny | warn | off)")
    rules = doc.get("rules") or {}
    rule_spans = span.children.get("rules")
    if not isinstance(rules, dict):
        raise policies.PolicyError(f"{FILE}:{rule_spans.line if rule_spans else span.line}: "
                                   f"'rules' must map rule or package names to deny, warn or off")
    known = _known(policy_set)
    out: dict[str, str] = {}
    for key, value in rules.items():
        line = rule_spans.children[key].line if rule_spans and key in rule_spans.children else span.line
        # YAML 1.1 reads a bare `off` as false: take it for what was written
        action = "off" if value is False else value
        if action not in ACTIONS:
            raise policies.PolicyError(f"{FILE}:{line}: {key}: {value!r} is not one of deny, warn, off")
        if key not in known:
            raise policies.PolicyError(
                f"{FILE}:{line}: {key} is neither a rule nor a package of the policy set "
                f"(rules are named <package>/<rule>, e.g. {next(iter(sorted(known)), 'main/deny')})")
        out[key] = action
    return Enforcement(out)


def _known(policy_set: policies.PolicySet) -> set[str]:
    """Rules as reports name them (Rego `<package>/<rule>`, Gatekeeper `<Kind>/<constraint>`)
    and their packages (kinds)."""
    rules = {policies.rule_name(ep) for ep in policy_set.entrypoints}
    gk = getattr(policy_set, "gatekeeper", None)
    rules |= {str(c.rule) for c in getattr(gk, "constraints", ())}
    return rules | {r.rpartition("/")[0] for r in rules}


def apply(found: Iterable[pv.Violation], enforcement: Enforcement) -> list[pv.Violation]:
    """`found` with the overrides applied (the same objects when there are none)."""
    if not enforcement.rules:
        return list(found)
    out: list[pv.Violation] = []
    for v in found:
        action = enforcement.action(v.rule)
        if action is None:
            out.append(v)
        elif action == "off":
            continue
        elif action == "warn":
            out.append(pv.warning(v.path, v.line, v.obj, v.rule, v.message))
        else:
            out.append(pv.error(v.path, v.line, v.obj, v.rule, v.message))
    return out


def apply_findings(found: policies.Findings, enforcement: Enforcement) -> policies.Findings:
    """`apply` that keeps the exceptions the policies granted."""
    if not enforcement.rules:
        return found
    return policies.Findings(apply(found, enforcement), found.exceptions)
