"""Where things live inside a project directory, and the rule that every path stays inside it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factory import witness
from factory.errors import FactoryError

FACTORY_DIR = ".factory"
CONFIG_FILE = "training-config.json"
# The same configuration in YAML: one schema, one validator, either file (never both).
YAML_CONFIG_FILES = ("factory.yaml", "factory.yml")
CONFIG_NAMES = (CONFIG_FILE, *YAML_CONFIG_FILES)


def config_files(root: Path) -> list[Path]:
    """The config files present in `root`, in CONFIG_NAMES order."""
    found = []
    for name in CONFIG_NAMES:
        witness.saw(root / name)  # one appearing or vanishing changes every answer
        if (root / name).is_file():
            found.append(root / name)
    return found


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def open(cls, directory: str | Path) -> "Project":
        root = Path(directory).resolve()
        found = config_files(root)
        if not found:
            raise FactoryError("E_NOT_A_PROJECT",
                               f"{root} has no {CONFIG_FILE} (or {YAML_CONFIG_FILES[0]}), so it "
                               f"is not a project", details={"project": str(root)})
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise FactoryError("E_CONFIG", f"{root} has {names}: one project, one config file",
                               hint="Keep one of them (they validate against the same schema) "
                                    "and delete the others.",
                               details={"file": str(found[0]), "errors": [], "found": names})
        return cls(root)

    # --- engine bookkeeping -------------------------------------------------------------------
    @property
    def factory_dir(self) -> Path:
        return self.root / FACTORY_DIR

    @property
    def state_file(self) -> Path:
        return self.factory_dir / "state.json"

    @property
    def events_file(self) -> Path:
        return self.factory_dir / "events.jsonl"

    @property
    def lock_file(self) -> Path:
        return self.factory_dir / "lock"

    @property
    def hash_cache_file(self) -> Path:
        return self.factory_dir / "hash-cache.json"

    @property
    def training_status_file(self) -> Path:
        return self.factory_dir / "training-status.json"

    @property
    def training_log_file(self) -> Path:
        # one JSON line per logged training step: the loss curve `factory ui` draws
        return self.factory_dir / "training-log.jsonl"

    @property
    def frozen_eval_file(self) -> Path:
        return self.factory_dir / "frozen-eval.json"

    @property
    def registry_file(self) -> Path:
        return self.factory_dir / "registry.json"

    @property
    def logs_dir(self) -> Path:
        return self.factory_dir / "logs"

    # --- user-visible layout ------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        """training-config.json, or factory.yaml / factory.yml when that is the project's."""
        found = config_files(self.root)
        return found[0] if found else self.root / CONFIG_FILE

    @property
    def splits_dir(self) -> Path:
        return self.root / "data" / "splits"

    def split_file(self, name: str) -> Path:
        return self.splits_dir / f"{name}.jsonl"

    @property
    def rejected_file(self) -> Path:
        return self.root / "data" / "rejected.jsonl"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def scripts_dir(self) -> Path:
        return self.root / "scripts"

    @property
    def adapter_dir(self) -> Path:
        return self.root / "models" / "checkpoints" / "lora"

    @property
    def runs_dir(self) -> Path:
        return self.root / "models" / "runs"

    @property
    def deployed_dir(self) -> Path:
        return self.root / "models" / "deployed"

    def inside(self, relative: str | Path) -> Path:
        """Resolve a configured path and refuse anything that lands outside the project."""
        candidate = (self.root / relative).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise FactoryError("E_PATH_ESCAPE",
                               f"{relative!s} resolves to {candidate}, outside {self.root}",
                               details={"path": str(relative)})
        return candidate

    def rel(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()


def local_model_dir(project: Project, name: str) -> Path | None:
    """The folder a model name points to inside the project, or None for a hub id.

    A name is a local folder when it exists in the project or is written as a path (./, ../, /);
    anything else is a hub id, loaded by the very same from_pretrained call on a user's machine.
    """
    if name.startswith(("./", "../", "/")) or (project.root / name).exists():
        return project.inside(name)
    witness.saw(project.root / name)  # a folder of that name appearing later makes it local
    return None
