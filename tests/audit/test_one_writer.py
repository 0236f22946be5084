"""``audit`` is the only writer of audit records: no module outside ``audit/`` appends
to the chain (``audit.chain.append``) or creates an ``AuditRecord`` itself
(``AuditRecord(...)``, ``AuditRecord.objects.create/bulk_create/...``). Everything
else calls an ``audit`` service (``audit.services.record``,
``audit.usage_ingest.record_usage``).

The check reads the source tree with ``ast`` and follows imports and aliases, so a
local list that happens to be called ``chain`` is not a finding. Tests are not
scanned: they build records to prove the chain detects tampering.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SKIPPED_DIRS = {".venv", "tests", "audit", "node_modules", "static", "templates", "var"}
CREATORS = {"create", "bulk_create", "get_or_create", "update_or_create"}


def first_party_sources() -> list[Path]:
    """Every Python file of the project outside ``audit/`` and ``tests/``."""
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not ({part for part in path.relative_to(ROOT).parts[:-1]} & SKIPPED_DIRS)
        and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    )


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of a Name/Attribute chain, None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def audit_record_writes(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` creates audit records itself: ``line: what``."""
    tree = ast.parse(source, filename=filename)
    # What each local name means: "record" (the model), "chain" (the module),
    # "append" (the function), "models" (audit.models), "audit" (the package).
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                local = alias.asname or alias.name
                target = f"{node.module}.{alias.name}"
                meaning = {
                    "audit.models.AuditRecord": "record",
                    "audit.chain": "chain",
                    "audit.chain.append": "append",
                    "audit.models": "models",
                }.get(target)
                if meaning:
                    names[local] = meaning
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "audit" or alias.name.startswith("audit."):
                    if alias.asname:
                        names[alias.asname] = {
                            "audit.chain": "chain",
                            "audit.models": "models",
                            "audit": "audit",
                        }.get(alias.name, "")
                    else:
                        names["audit"] = "audit"

    def meaning_of(dotted: str) -> str | None:
        head, _, rest = dotted.partition(".")
        base = names.get(head)
        if not base:
            return None
        resolved = {
            "audit": "audit",
            "models": "audit.models",
            "chain": "audit.chain",
            "record": "audit.models.AuditRecord",
            "append": "audit.chain.append",
        }[base]
        return f"{resolved}.{rest}" if rest else resolved

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        target = meaning_of(dotted) if dotted else None
        if target is None:
            continue
        what = None
        if target == "audit.chain.append":
            what = "appends to the audit chain"
        elif target == "audit.models.AuditRecord":
            what = "builds an AuditRecord"
        elif target.startswith("audit.models.AuditRecord."):
            manager_call = target.removeprefix("audit.models.AuditRecord.").split(".")
            if manager_call[-1] in CREATORS:
                what = f"calls AuditRecord.{'.'.join(manager_call)}"
        if what:
            found.append(f"{node.lineno}: {what} ({dotted})")
    return found


def test_no_module_outside_audit_creates_audit_records():
    sources = first_party_sources()
    assert ROOT / "gateway" / "usage.py" in sources  # the scan covers the apps
    assert not any("audit" in path.relative_to(ROOT).parts[:1] for path in sources)
    findings = [
        f"{path.relative_to(ROOT)}:{finding}"
        for path in sources
        for finding in audit_record_writes(path.read_text(), str(path))
    ]
    assert findings == [], "only audit/ writes audit records:\n" + "\n".join(findings)


@pytest.mark.parametrize(
    "source",
    [
        "from audit import chain\nchain.append([record])\n",
        "from audit import chain as c\nc.append([record])\n",
        "import audit.chain\naudit.chain.append([record])\n",
        "from audit.chain import append\nappend([record])\n",
        "from audit.models import AuditRecord\nAuditRecord(action='x', outcome='success')\n",
        "from audit.models import AuditRecord as R\nR.objects.create(action='x')\n",
        "from audit.models import AuditRecord\nAuditRecord.objects.bulk_create([])\n",
        "from audit import models\nmodels.AuditRecord.objects.get_or_create(action='x')\n",
        "import audit.models as m\nm.AuditRecord(action='x')\n",
    ],
)
def test_a_planted_violation_is_found(source):
    assert len(audit_record_writes(source)) == 1, source


def test_the_services_and_unrelated_names_are_not_findings():
    source = (
        "from audit import services as audit\n"
        "from audit.models import AuditRecord\n"
        "from audit.usage_ingest import record_usage\n"
        "audit.record(action='x', outcome='success')\n"
        "record_usage([])\n"
        "AuditRecord.objects.filter(action='x').count()\n"
        "chain = []\n"
        "chain.append(1)\n"
    )
    assert audit_record_writes(source) == []


def test_the_gateway_before_the_move_would_have_failed():
    """What ``gateway/usage.py`` did before audit became the only writer."""
    source = (
        "from audit import chain\n"
        "from audit.models import AuditRecord\n"
        "def _audit_for(entry):\n"
        "    return AuditRecord(action='inference:run', outcome='success')\n"
        "def _insert(entries):\n"
        "    chain.append([_audit_for(entry) for entry in entries])\n"
    )
    assert [finding.split(":")[0] for finding in audit_record_writes(source)] == ["4", "6"]
