import json
import os
import signal
import subprocess
import sys

import pytest

from factory.errors import FactoryError
from factory.lock import ProjectLock
from factory.project import Project

HOLDER = """
import sys, time
from factory.lock import ProjectLock
from factory.project import Project
with ProjectLock(Project.open(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "training-config.json").write_text('{"name": "t", "model": {"name": "x"}}')
    return Project.open(tmp_path)


def start_holder(project):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(project.root)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_is_refused_naming_the_holder(project):
    holder = start_holder(project)
    try:
        with pytest.raises(FactoryError) as err:
            with ProjectLock(project):
                pass
        assert err.value.code == "E_LOCKED"
        assert str(holder.pid) in err.value.message
        assert ProjectLock(project).is_held()
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_never_leaves_a_stale_lock(project):
    holder = start_holder(project)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert not ProjectLock(project).is_held()
    with ProjectLock(project):
        assert json.loads(project.lock_file.read_text())["pid"] == os.getpid()
    assert ProjectLock(project).holder() is None


def test_lock_is_released_on_exit(project):
    with ProjectLock(project):
        assert ProjectLock(project).is_held()
    assert not ProjectLock(project).is_held()
