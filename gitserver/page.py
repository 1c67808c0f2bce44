"""The status page: one server-rendered HTML page (no build step, no JavaScript needed).

Served by the Flask app at `/` (read role). Shows the branches with their recent commits (gate
verdict, sync, health, and the policy set that passed it), the active policy source, the applied
objects with their health, recent refused pushes with their reasons and drift events. Reads the
push log, the gate's verdicts and the reconciler's status file only; every value is escaped by
Jinja2 and no Secret data ever reaches these files.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import render_template_string

from pushgate import datadir

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>pushgate</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
 h1{font-size:20px} h2{font-size:16px;margin-top:2em;border-bottom:1px solid #ddd}
 table{border-collapse:collapse;width:100%} td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #eee}
 code{font:12px monospace} .Ready,.accepted,.Current,.True{color:#080} .Failed,.refused,.False{color:#b00}
 .Progressing,.InProgress,.Degraded{color:#a60}
</style></head><body>
<h1>pushgate <small>{{ repo }}</small></h1>
<p id="policies">Active policies: {% if policies.get("source") == "commit" %}<code>{{ policies.get("commit") }}</code> of policies.git{% elif policies.get("source") == "directory" %}directory <code>{{ policies.get("directory") }}</code> (version <code>{{ policies.get("version", "")[:12] }}</code>; policies.git has no commit yet){% else %}<b class="Failed">unavailable: {{ policies.get("error") }}</b>{% endif %}</p>
<section id="conditions"><h2>Deploy status: {{ branch }}</h2>
{% if not deploy.get("attached") and not deploy.get("conditions") %}<p>No reconciler attached: pushes land, nothing is applied.</p>{% endif %}
<table>{% for c in deploy.get("conditions", []) %}
<tr><th>{{ c.type }}</th><td class="{{ c.status }}">{{ c.status }}</td><td>{{ c.reason }}</td><td>{{ c.message }}</td></tr>
{% endfor %}</table>
<p>last applied <code>{{ (deploy.get("lastAppliedRevision") or "-")[:12] }}</code>,
 last attempted <code>{{ (deploy.get("lastAttemptedRevision") or "-")[:12] }}</code>
 {% if leader %}<br><b class="Degraded">{{ leader }}</b>{% endif %}
 {% if cluster and not cluster.get("reachable", True) %}<b class="Failed">cluster unreachable: {{ cluster.get("message") }}</b>{% endif %}</p>
</section>
<section id="commits"><h2>Recent commits</h2><table>
<tr><th>commit</th><th>message</th><th>pusher</th><th>gate</th><th>policies</th><th>sync and health</th><th>when</th></tr>
{% for c in commits %}<tr><td><code>{{ c.sha[:12] }}</code></td><td>{{ c.message }}</td><td>{{ c.pusher }}</td>
<td class="accepted">accepted</td><td class="policy-source"><code>{{ c.policies }}</code></td><td class="{{ c.result }}">{{ c.result }} {{ c.reason }}</td><td>{{ c.when }}</td></tr>
{% endfor %}</table></section>
{% if plan %}<section id="plan"><h2>Plan of the last push to {{ branch }} (<code>{{ plan.revision[:12] }}</code>, {{ "accepted" if plan.accepted else "refused" }})</h2>
<p>{{ plan["counts"]["create"] }} to create, {{ plan["counts"]["update"] }} to update, {{ plan["counts"]["prune"] }} to prune, {{ plan["counts"]["unchanged"] }} unchanged</p><table>
{% for r in plan["create"] %}<tr><td>create</td><td>{{ r }}</td><td></td></tr>{% endfor %}
{% for u in plan["update"] %}<tr><td>update</td><td>{{ u.ref }}</td><td><code>{{ u.changes | join("; ") }}</code></td></tr>{% endfor %}
{% for p in plan["prune"] %}<tr><td>{{ "prune" if p.willDelete else "release" }}</td><td>{{ p.ref }}</td><td></td></tr>{% endfor %}
</table></section>{% endif %}
<section id="objects"><h2>Applied objects</h2><table>
<tr><th>object</th><th>action</th><th>health</th><th>message</th></tr>
{% for o in deploy.get("objects", []) %}<tr><td>{{ o.ref }}</td><td>{{ o.action }}</td>
<td class="{{ o.health }}">{{ o.health }}</td><td>{{ o.healthMessage or o.message }}</td></tr>
{% endfor %}</table></section>
<section id="refused"><h2>Recent refused pushes</h2><table>
<tr><th>when</th><th>pusher</th><th>ref</th><th>reason</th><th>problems</th></tr>
{% for p in refused %}<tr><td>{{ p.when }}</td><td>{{ p.pusher }}</td><td>{{ p.refs }}</td>
<td class="refused">{{ p.reason }}</td><td>{% for line in p.problems[:10] %}<code>{{ line }}</code><br>{% endfor %}</td></tr>
{% endfor %}</table></section>
{% if reverts %}<section id="reverts"><h2>Automatic reverts</h2><table>
<tr><th>when</th><th>commit</th><th>result</th><th>revert</th><th>why</th></tr>
{% for r in reverts %}<tr><td>{{ r.when }}</td><td><code>{{ r.sha[:12] }}</code></td><td class="{{ r.result }}">{{ r.result }}</td>
<td><code>{{ r.commit[:12] }}</code></td><td>{{ r.reason }}{% for line in r.lines[:10] %}<br><code>{{ line }}</code>{% endfor %}</td></tr>
{% endfor %}</table></section>{% endif %}
{% if images %}<section id="images"><h2>Image automation</h2>
<p>{{ images.get("result", "-") }}: {{ images.get("message", "") }} (scan {{ when(images.get("updated")) }})</p>
{% for b in images.get("bumps", []) %}<code>{{ b }}</code><br>{% endfor %}
{% if images.get("lastRefusal") %}<p class="refused">Last refused bump (<code>{{ images.lastRefusal.commit[:12] }}</code>, {{ when(images.lastRefusal.time) }}): {{ images.lastRefusal.reason }}</p>
{% for line in images.lastRefusal.lines[:20] %}<code>{{ line }}</code><br>{% endfor %}{% endif %}
{% for e in images.get("errors", [])[:10] %}<code class="Failed">{{ e }}</code><br>{% endfor %}
</section>{% endif %}
<section id="drift"><h2>Drift</h2><table>
<tr><th>when</th><th>object</th><th>fields</th><th>corrected</th></tr>
{% for d in deploy.get("drift", [])[:20] %}<tr><td>{{ when(d.time) }}</td><td>{{ d.ref }}</td>
<td><code>{{ d.fields | join(", ") }}</code></td><td>{{ "yes" if d.corrected else "no" }}</td></tr>
{% endfor %}</table></section>
</body></html>"""


def _when(t: float | None) -> str:
    if not t:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(data_dir: str, pushes: list[dict[str, Any]], branch: str = "main",
           policies: dict[str, Any] | None = None, images: dict[str, Any] | None = None) -> str:
    deploy: dict[str, Any] = dict(datadir.read_status(data_dir, branch) or {})
    results = {h.get("revision"): h for h in deploy.get("history", [])}
    commits, refused = [], []
    for p in pushes:
        refs = ", ".join(u["ref"] for u in p.get("updates", []))
        repo = p.get("repo") or datadir.REPO
        if repo != datadir.REPO:  # a push to policies.git: listed when refused, never a commit
            refs = f"{repo} {refs}"
        if p.get("accepted") and repo == datadir.REPO:
            for u in p.get("updates", []):
                if u["ref"] != f"refs/heads/{branch}" or set(u["new"]) == {"0"}:
                    continue
                h = results.get(u["new"], {})
                verdict = datadir.read_verdict(data_dir, u["new"])
                commits.append({"sha": u["new"], "message": h.get("message", ""), "pusher": p.get("pusher"),
                                "policies": datadir.policy_source_text(
                                    verdict.get("policySource", "") if verdict else ""),
                                "result": h.get("result", "pending" if deploy else "not applied"),
                                "reason": ": ".join(x for x in (h.get("reason", ""), h.get("detail", "")) if x),
                                "when": _when(p.get("time"))})
        elif not p.get("accepted"):
            refused.append({"when": _when(p.get("time")), "pusher": p.get("pusher"), "refs": refs,
                            "reason": p.get("reason", ""), "problems": p.get("problems", [])})
    reverts = [{"sha": sha, "when": _when(r.get("time")), "result": r.get("result", ""),
                "commit": r.get("commit", ""), "reason": r.get("reason", ""), "lines": r.get("lines", [])}
               for sha, r in ((deploy.get("autoRevert") or {}).get("done") or {}).items()]
    reverts.sort(key=lambda r: r["when"], reverse=True)
    return render_template_string(_TEMPLATE, repo=datadir.REPO, branch=branch, deploy=deploy,
                                  reverts=reverts[:20], images=images or {},
                                  cluster=deploy.get("cluster"), commits=commits[:30],
                                  refused=refused[:30], when=_when, plan=latest_plan(pushes, branch),
                                  leader=datadir.leader_summary(data_dir, branch),
                                  policies=policies or {})


def latest_plan(pushes: list[dict[str, Any]], branch: str) -> dict[str, Any] | None:
    """The live plan of the newest push to `branch` that had one (pushes newest first)."""
    ref = f"refs/heads/{branch}"
    for p in pushes:
        if (p.get("repo") or datadir.REPO) != datadir.REPO:
            continue
        if p.get("plan") and any(u.get("ref") == ref for u in p.get("updates", [])):
            return {"accepted": p.get("accepted"), "time": p.get("time"),
                    "revision": next(u["new"] for u in p["updates"] if u.get("ref") == ref),
                    **p["plan"]}
    return None
