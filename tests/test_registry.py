"""The promotion registry through the CLI: list every promotion, roll back to an earlier one."""
import json

from conftest import factory
from factory import registry
from factory.project import Project


def promoted(tmp_path, count: int) -> Project:
    rc, _ = factory("init", str(tmp_path / "p"))
    assert rc == 0
    project = Project.open(tmp_path / "p")
    promotions = []
    for n in range(1, count + 1):
        (project.deployed_dir / f"v{n}-{n}{n}").mkdir(parents=True)
        promotions.append({"id": f"v{n}-{n}{n}", "checkpoint_hash": f"{n}" * 64,
                           "promoted_at": f"2026-11-0{n}T00:00:00+00:00",
                           "metrics": {"exact_match": n / 10}, "outputs": {}})
    registry.write(project, {"schema": 1, "current": promotions[-1]["id"],
                             "promotions": promotions})
    return project


def test_list_then_roll_back_and_forward(tmp_path):
    project = promoted(tmp_path, 2)
    rc, out = factory("-C", str(project.root), "promote", "--list")
    assert rc == 0 and out["result"]["current"] == "v2-22"
    assert [(p["id"], p["current"]) for p in out["result"]["promotions"]] == [
        ("v1-11", False), ("v2-22", True)]
    assert out["next"]["command"] == "factory rollback"

    rc, out = factory("-C", str(project.root), "rollback")
    assert rc == 0 and out["result"]["current"] == "v1-11"
    # The next evaluate holds candidates to the restored model.
    assert registry.champion(project, "x" * 64)["id"] == "v1-11"
    rc, out = factory("-C", str(project.root), "rollback")
    assert rc == 2 and out["error"]["code"] == "E_NO_PROMOTION"

    rc, out = factory("-C", str(project.root), "rollback", "v2-22")
    assert rc == 0 and out["result"]["current"] == "v2-22"
    book = json.loads(project.registry_file.read_text())
    assert [(h["from"], h["to"]) for h in book["history"]] == [("v2-22", "v1-11"),
                                                               ("v1-11", "v2-22")]
    assert len(book["promotions"]) == 2, "a rollback forgets no promotion"


def test_rollback_refuses_unknown_ids_and_missing_outputs(tmp_path):
    project = promoted(tmp_path, 2)
    rc, out = factory("-C", str(project.root), "rollback", "v9-99")
    assert rc == 2 and out["error"]["code"] == "E_NO_PROMOTION"
    (project.deployed_dir / "v1-11").rmdir()
    before = project.registry_file.read_bytes()
    rc, out = factory("-C", str(project.root), "rollback")
    assert rc == 2 and "gone" in out["error"]["message"]
    assert project.registry_file.read_bytes() == before
