"""tools/check_structure.py's rules on small made-up graphs (`make lint` runs it on the real one)."""

from __future__ import annotations

from pathlib import Path

from tools.check_structure import cycles, oversized, simulator_chains


def test_every_cycle_is_found_once_with_all_its_modules() -> None:
    graph = {
        "apps.a": {"apps.b"},
        "apps.b": {"apps.c"},
        "apps.c": {"apps.a", "apps.d"},
        "apps.d": set(),
        "apps.x": {"apps.y"},
        "apps.y": {"apps.x"},
    }
    assert cycles(graph) == [["apps.a", "apps.b", "apps.c"], ["apps.x", "apps.y"]]


def test_a_package_importing_its_own_children_is_no_cycle() -> None:
    graph = {"apps.pkg": {"apps.pkg.child"}, "apps.pkg.child": {"apps.pkg"}}
    assert cycles(graph) == []
    assert cycles({**graph, "apps.pkg.child": {"apps.pkg.grandchild"}, "apps.pkg.grandchild": {"apps.pkg"}}) == []
    through_another = {**graph, "apps.pkg.child": {"apps.other"}, "apps.other": {"apps.pkg"}}
    assert cycles(through_another) == [["apps.other", "apps.pkg", "apps.pkg.child"]]


def test_product_code_reaching_the_simulator_through_devstack_is_reported_at_the_boundary() -> None:
    graph = {
        "messaging_center.settings": {"devstack.embedded"},
        "devstack.embedded": {"devstack.simulator.state"},
        "devstack.simulator.state": set(),
        "devstack.launcher": {"devstack.simulator.state"},
        "apps.x": {"messaging_center.settings"},
    }
    assert simulator_chains(graph) == [["messaging_center.settings", "devstack.embedded", "devstack.simulator.state"]]
    graph["devstack.embedded"] = set()
    assert simulator_chains(graph) == []


def test_long_modules_are_reported_but_migrations_are_not(tmp_path: Path) -> None:
    long, short = tmp_path / "long.py", tmp_path / "short.py"
    long.write_text("x = 1\n" * 11)
    short.write_text("x = 1\n" * 10)
    files = {"apps.a.long": long, "apps.a.short": short, "apps.a.migrations.0001_initial": long}
    assert oversized(files, max_lines=10) == [("apps.a.long", 11)]
