"""Full gate over N manifests: `pushgate validate DIR` vs kubeconform (and conftest) on the same DIR.

pushgate checks the strict Kubernetes v1.37 JSON schemas (unknown fields are errors) and its
default Rego policies; kubeconform checks the same schemas only, conftest the same policies only.
Every process is timed whole (start-up included) and the sides alternate within each repeat.
Targets: median(pushgate) / median(kubeconform) <= 1.0 (the whole gate in less time than the
schema check alone), and the policy phase <= 0.3 ms per object on both of pushgate's engines
(the embedded regopy workers, and an OPA server on loopback), measured in-process as the median
of repeats over all N objects, each engine already started (a server warms its engine's primary
worker at start), the helper workers each big batch starts (and stops) and concurrent requests
included.

pushgate runs as `pushgate validate --gate-timeout 3600`: the default gate time limit (30 s) is
raised so that a slow run is timed, not refused; runs that took longer than the default are
counted in the report.

Offline on every side. kubeconform reads the schemas of the installed kubernetes-validate wheel
(the very files pushgate compiles), but it cannot use them as shipped: each kind file has an
`$id` of https://kubernetes.io/api/<kind>/... and `$ref`s to `/api/_definitions.json`, which
kubeconform would try to download (and, offline, report "could not find schema" for every
object). The benchmark therefore writes a copy with the `$id`s removed and the references made
relative (`_definitions.json#/$defs/...`), not timed; kubeconform runs with an unroutable proxy
so that any network attempt fails instead of leaving the machine. conftest (and the OPA server)
get the policy modules pushgate loads (every `*.rego` but `*_test.rego`: conftest would otherwise
also run the test packages, whose helper `deny_image` it takes for a rule).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common, corpus

NAME = "gate_full"
K8S_VERSION = "1.37.0"
TEMPLATE = "{{.NormalizedKubernetesVersion}}-local{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json"
# `pushgate validate` as shipped, with its gate time limit raised: runs longer than the default
# limit (which a busy machine exceeds at 5,000 manifests) are counted, as the default refuses them.
PUSHGATE = [os.path.join(os.path.dirname(sys.executable), "pushgate"), "validate", "--gate-timeout",
            "3600"]
SHIPPED_LIMIT = 30.0
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": ""}


def wheel_schema_dir() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("kubernetes-validate is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"


def kubeconform_schemas(dest: Path, version: str = K8S_VERSION) -> Path:
    """The wheel's `-local-strict` schemas with local references, under `dest`. Returns `dest`."""
    src = wheel_schema_dir() / f"v{version}-local-strict"
    out = dest / f"v{version}-local-strict"
    out.mkdir(parents=True, exist_ok=True)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("/api/_definitions.json#"):
                node["$ref"] = ref[len("/api/"):]
            for v in node.values():
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    for f in src.iterdir():
        doc = json.loads(f.read_text(encoding="utf-8"))
        doc.pop("$id", None)
        fix(doc)
        (out / f.name).write_text(json.dumps(doc), encoding="utf-8")
    return dest


def conftest_policies(dest: Path) -> Path:
    """The modules pushgate's policy loader takes from policies/, copied to `dest`."""
    from pushgate.gate import policies

    for m in policies.load(str(common.ROOT / "policies")).modules:
        p = dest / m.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(m.source, encoding="utf-8")
    return dest


def breakdown(repo: Path, policy_dir: Path, work: Path, repeats: int) -> dict[str, Any]:
    """The gate in-process, phase by phase (where pushgate's time goes), and the policy phase of
    each engine over every object: medians of `repeats` runs, the engines alternating."""
    from gitserver.settings import default_policies_dir
    from pushgate.build.sources import DirTree
    from pushgate.gate import gate as gatemod
    from pushgate.gate import policies
    from pushgate.gate.embedded import EmbeddedEngine
    from pushgate.gate.opaserver import OpaServerEngine
    from tests.bed.opa import OpaServer

    t0 = time.perf_counter()
    ps = policies.load(default_policies_dir())
    embedded = EmbeddedEngine(ps)
    g = gatemod.Gate(gatemod.GateConfig(timeout=3600), engine=embedded, kustomize_bin=None)
    opa = OpaServer(policy_dir, work / "opa").start()
    engines: dict[str, policies.PolicyEngine] = {"embedded": embedded,
                                                 "opa": OpaServerEngine(opa.url, ps)}
    try:
        t1 = time.perf_counter()
        b = g.build(DirTree(str(repo)))
        t2 = time.perf_counter()
        bad = 0
        for m in b.manifests:
            bad += len(g.schemas.validate(m.obj, path=m.path, line_of=m.line_of, ref=m.ref))
        t3 = time.perf_counter()
        objects = [m.obj for m in b.manifests]
        for engine in engines.values():
            engine.evaluate(objects[:1], {}, 600)  # started (and the OPA client imported)
        runs: dict[str, list[float]] = {name: [] for name in engines}
        denials = 0
        for i in range(repeats):
            for name in (list(engines) if i % 2 == 0 else list(reversed(engines))):
                t = time.perf_counter()
                rows = engines[name].evaluate(objects, {}, 3600)
                runs[name].append(time.perf_counter() - t)
                denials += sum(len(v or []) for row in rows for _ep, v in row)
        t4 = time.perf_counter()
        g.close()
        cold = gatemod.Gate(gatemod.GateConfig(timeout=3600), engine=EmbeddedEngine(ps),
                            kustomize_bin=None)
        try:
            t5 = time.perf_counter()
            _b, found = cold.check(DirTree(str(repo)))
            whole = time.perf_counter() - t5
        finally:
            cold.close()
    finally:
        g.close()
        opa.stop()
    if bad or denials or b.problems or list(found):
        raise RuntimeError(f"corpus not clean: {bad} schema, {denials} policy, {len(b.problems)} build, "
                           f"{len(list(found))} found")
    del t4
    return {"setup": t1 - t0, "parse": t2 - t1, "schemas": t3 - t2,
            "policies": {name: common.median(xs) for name, xs in runs.items()},
            "policy_runs": runs, "whole": whole, "objects": float(len(b.manifests))}


def _check(side: str, res: common.Timed, n: int) -> str:
    """"ok", or why this run did not give the expected all-valid verdict."""
    out = res.stdout + res.stderr
    if side == "pushgate":
        ok = res.returncode == 0 and bool(re.search(r"^0 errors, 0 warnings", out, re.M))
    elif side == "kubeconform":
        ok = res.returncode == 0 and f"Valid: {n}, Invalid: 0, Errors: 0, Skipped: 0" in out
    else:
        ok = res.returncode == 0 and bool(re.search(r"\b0 failures, 0 exceptions", out))
    if ok:
        return "ok"
    return f"exit {res.returncode}: {out.strip().splitlines()[-1][:160] if out.strip() else ''}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(NAME, __doc__, 5000, 5)
    args.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first")
    args.add_argument("--no-breakdown", action="store_true", help="skip the in-process phase timing")
    opts = args.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    from tests.bed import procs, tools

    kubeconform, conftest = tools.path("kubeconform"), tools.path("conftest")

    with tempfile.TemporaryDirectory(prefix="bench-gate-full-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = corpus.generate(opts.size)
        repo = work / "repo"
        corpus.write(repo, files)
        schemas = kubeconform_schemas(work / "kubeconform-schemas")
        pol = conftest_policies(work / "conftest-policies")
        offline = {**os.environ, **OFFLINE}
        sides = {
            "pushgate": ([*PUSHGATE, str(repo)], None),
            "kubeconform": ([kubeconform, "-strict", "-summary", "-kubernetes-version", K8S_VERSION,
                             "-schema-location", f"{schemas}/{TEMPLATE}", str(repo)], offline),
            "conftest": ([conftest, "test", "--no-color", "--policy", str(pol), "--all-namespaces",
                          str(repo)], offline),
        }
        times: dict[str, list[float]] = {s: [] for s in sides}
        failures: dict[str, list[str]] = {s: [] for s in sides}
        for i in range(opts.warmup + opts.repeats):
            order = list(sides) if i % 2 == 0 else ["kubeconform", "conftest", "pushgate"]
            for side in order:
                argv_, env = sides[side]
                res = common.run_timed(argv_, cwd=work, env=env)
                status = _check(side, res, len(files))
                print(f"  run {i + 1} {side:<11} {res.seconds:8.2f} s  {status}", flush=True)
                if i < opts.warmup:
                    continue
                times[side].append(res.seconds)
                if status != "ok":
                    failures[side].append(status)
        try:
            phases = None if opts.no_breakdown else breakdown(repo, pol, work, max(1, opts.repeats))
        finally:
            procs.REGISTRY.stop_all()

    med = {s: common.median(t) for s, t in times.items()}
    both = [k + c for k, c in zip(times["kubeconform"], times["conftest"], strict=True)]
    med_both = common.median(both)
    ratio = med["pushgate"] / med["kubeconform"]
    ratio_both = med["pushgate"] / med_both
    rows = [[s, len(times[s]), med[s], min(times[s]), max(times[s]), len(failures[s])] for s in sides]
    rows.append(["kubeconform + conftest", len(both), med_both, min(both), max(both),
                 len(failures["kubeconform"]) + len(failures["conftest"])])
    mix = ", ".join(f"{k} {v}" for k, v in corpus.kinds(files).items())
    body = [
        f"{len(files)} manifests in {len(files)} files ({mix}), "
        f"all valid; {opts.repeats} timed repeats after {opts.warmup} warm-up, whole processes.",
        "",
        common.table(["side", "runs", "median s", "min s", "max s", "failed runs"], rows),
        "",
        f"**ratio pushgate (schemas + policies) / kubeconform (schemas only) = {ratio:.2f}** "
        f"(target <= 1.0: {common.verdict(ratio, 1.0)})",
        "",
        f"ratio pushgate / (kubeconform + conftest) = {ratio_both:.2f} (the earlier target, <= 1.0: "
        f"{common.verdict(ratio_both, 1.0)})",
    ]
    over = sum(1 for t in times["pushgate"] if t > SHIPPED_LIMIT)
    body.append("")
    body.append(f"pushgate runs over the default {SHIPPED_LIMIT:.0f} s gate time limit "
                f"(`pushgate validate` without --gate-timeout would answer \"gate could not decide\", "
                f"exit 1): "
                f"{over} of {len(times['pushgate'])}.")
    for side, why in failures.items():
        for w in sorted(set(why)):
            body.append(f"- {side} failed {why.count(w)}x: `{w}`")
    per_object: dict[str, float] = {}
    if phases:
        n = phases["objects"]
        per_object = {name: v / n * 1000 for name, v in phases["policies"].items()}
        rows_ = [[k, phases[k], phases[k] / n * 1000] for k in ("setup", "parse", "schemas")]
        rows_ += [[f"policies, {name} engine (median of {len(phases['policy_runs'][name])})",
                   phases["policies"][name], per_object[name]] for name in phases["policies"]]
        rows_.append(["whole gate, cold (Gate.check, embedded engine)", phases["whole"],
                      phases["whole"] / n * 1000])
        body += ["", "pushgate phases (in-process, no time limit):", "",
                 common.table(["phase", "seconds", "ms per object"], rows_), ""]
        body += [f"**policy phase, {name} engine = {ms:.3f} ms per object** (target <= 0.3: "
                 f"{common.verdict(ms, 0.3)}; runs: "
                 f"{', '.join(f'{x:.2f}' for x in phases['policy_runs'][name])} s)"
                 for name, ms in per_object.items()]
    text = "\n".join(body)
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "full gate, pushgate validate vs kubeconform (+ conftest)", command, text, started_load))
    return {"size": len(files), "median": med, "median_kubeconform_plus_conftest": med_both,
            "ratio": ratio, "ratio_kubeconform_plus_conftest": ratio_both, "failures": failures,
            "phases": phases, "policy_ms_per_object": per_object}


if __name__ == "__main__":
    main()
