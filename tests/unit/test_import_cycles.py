"""No import cycle in any package of the repository (import-linter checks the layers; this checks the
rest: the sandbox and the bench have no layers contract of their own)."""

from __future__ import annotations

import grimp
import pytest


@pytest.mark.parametrize("package", ["kube_vxlan_controller", "kvc_sandbox", "bench"])
def test_no_module_imports_one_that_imports_it_back(package):
    graph = grimp.build_graph(package)
    cycles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            related = importer.startswith(imported + ".") or imported.startswith(importer + ".")
            if imported.startswith(package) and not related and \
                    graph.find_shortest_chain(importer=imported, imported=importer):
                cycles.add(tuple(sorted((importer, imported))))
    assert sorted(cycles) == []
