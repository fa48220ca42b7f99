"""No module but the job service writes a job's status.

controlplane/services/jobs.py is the one writer: it checks each move against
controlplane/domain/jobs.py. This reads every other control-plane module's
source and fails on the four ways a status could be written behind its back:

* SQL text that updates or inserts into ``jobs`` and names ``status``;
* ``<anything>.status = <something with JobStatus>`` (an ORM attribute);
* ``.values(status=...)`` or ``Job(status=...)`` with a JobStatus;
* ``sa.update(models.Job)`` or ``insert(models.Job)`` at all.

A test below proves the check catches each of them.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "controlplane"
WRITER = PACKAGE / "services" / "jobs.py"
SQL_WRITE = re.compile(r"\b(UPDATE\s+jobs\b[\s\S]*?\bSET\b[\s\S]*?\bstatus\s*=|INSERT\s+INTO\s+jobs\b[\s\S]*?\bstatus\b)", re.I)


def _mentions_job_status(node: ast.AST) -> bool:
    return "JobStatus" in ast.unparse(node)


def writes(source: str) -> list[str]:
    """Where ``source`` writes a job's status, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_WRITE.search(node.value):
            found.append(f"{node.lineno}: SQL writes jobs.status")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in flat) and node.value is not None and _mentions_job_status(node.value):
                found.append(f"{node.lineno}: assigns .status a JobStatus")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if any(k.arg == "status" and _mentions_job_status(k.value) for k in node.keywords) and (name.endswith((".values", "Job"))):
                found.append(f"{node.lineno}: {name}(status=JobStatus…)")
            if re.search(r"(^|\.)(update|insert)$", name) and node.args and ast.unparse(node.args[0]).endswith("models.Job"):
                found.append(f"{node.lineno}: {name}(models.Job)")
    return found


def test_only_the_job_service_writes_a_jobs_status():
    offenders = {
        str(path.relative_to(ROOT)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != WRITER and "migrations" not in path.parts and (hits := writes(path.read_text()))
    }
    assert offenders == {}, "write job status through controlplane/services/jobs.py: " + repr(offenders)


def test_the_job_service_is_where_the_writes_are():
    assert len(writes(WRITER.read_text())) >= 5


@pytest.mark.parametrize(
    "source",
    [
        "q = sa.text(\"UPDATE jobs SET reason = :r, status = 'failed' WHERE id = :id\")",
        'q = """\n  update jobs\n  set status = \'queued\'\n"""',
        "job.status = models.JobStatus.FAILED",
        "job.status, job.error = models.JobStatus.FAILED, 'x'",
        "stmt = sa.update(models.Job).where(models.Job.id == 1)",
        "stmt = pg.insert(models.Job).values(id=1)",
        "stmt = table.update().values(status=models.JobStatus.QUEUED)",
        "row = models.Job(id=1, status=JobStatus.QUEUED)",
    ],
)
def test_the_check_catches_each_way_of_writing_a_status(source):
    assert writes(source)


def test_the_check_lets_reads_and_other_statuses_be():
    assert (
        writes(
            "host.status = models.HostStatus.DOWN\nq = sa.select(models.Job).where(models.Job.status == models.JobStatus.QUEUED)\n"
            "s = sa.text('SELECT status FROM jobs')\nws.observed_state = 'lost'"
        )
        == []
    )


@pytest.mark.parametrize("command", ["WorkspaceCommand", "WorkspaceRef", "BuildCommand"])
def test_each_command_kind_is_built_in_one_place(command):
    built = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(f"messages.{command}")
    ]
    assert len(built) == 1, built
