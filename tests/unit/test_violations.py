"""The report `git push` prints: one sanitized line per problem, sorted, then a summary."""

from __future__ import annotations

from pushgate.core import violations as pv


def test_str_is_the_line_git_push_prints() -> None:
    v = pv.error("apps/web.yaml", 12, "Deployment/shop/web", "pushgate.k8s.images/deny",
                 'container "web" uses image "nginx:latest"')
    assert str(v) == ('apps/web.yaml:12 Deployment/shop/web [pushgate.k8s.images/deny] '
                      'container "web" uses image "nginx:latest"')


def test_warning_is_tagged_and_file_level_problem_has_no_line() -> None:
    assert str(pv.warning("a.yaml", 3, "", "r/warn", "m")) == "warning: a.yaml:3 [r/warn] m"
    assert str(pv.error("x.yaml", 0, "", "tree.symlink", "no")) == "x.yaml [tree.symlink] no"


def test_control_bytes_and_newlines_are_stripped() -> None:
    v = pv.error("a.yaml", 1, "Pod/ns/p\x1b[31m", "r", "evil\x1b]0;title\x07 text\nnext\x00")
    line = str(v)
    assert "\x1b" not in line and "\x07" not in line and "\x00" not in line and "\n" not in line
    assert line.endswith("evil text next")


def test_report_sorts_errors_first_and_summarises() -> None:
    vs = [pv.warning("b.yaml", 1, "", "w", "later"), pv.error("c.yaml", 9, "", "e", "two"),
          pv.error("a.yaml", 2, "", "e", "one"), pv.error("a.yaml", 2, "", "e", "one")]
    lines = pv.report(vs)
    assert lines == ["a.yaml:2 [e] one", "c.yaml:9 [e] two", "warning: b.yaml:1 [w] later",
                     "2 errors, 1 warning in 3 files"]
    assert pv.report([]) == ["0 errors, 0 warnings in 0 files"]
