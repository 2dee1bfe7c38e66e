"""Typed errors with stable codes.

Every failure a user or a coding assistant can meet carries a code from CATALOGUE. Programs branch on
the code; people read the message; both get a hint naming the next command to try. Exit codes tell
"your input is wrong" from "a gate said no" from "something crashed", so a driver loop can react
without parsing text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_BAD_INPUT = 2
EXIT_BLOCKED = 3
EXIT_BUSY = 4
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Code:
    exit_code: int
    summary: str
    hint: str


CATALOGUE: dict[str, Code] = {
    "E_USAGE": Code(EXIT_BAD_INPUT, "The command line is not valid.",
                    "Run `factory --help` or `factory <command> --help`."),
    "E_NOT_A_PROJECT": Code(EXIT_BAD_INPUT, "The directory is not a model-factory project.",
                            "Create one with `factory init <dir>`, or pass `-C <project dir>`."),
    "E_PROJECT_EXISTS": Code(EXIT_BAD_INPUT, "The target directory already holds files.",
                             "Pick an empty or new directory for `factory init`."),
    "E_CONFIG": Code(EXIT_BAD_INPUT, "The project configuration is invalid.",
                     "Fix the named field in training-config.json, then run `factory status`."),
    "E_SCHEMA": Code(EXIT_BAD_INPUT, "Data records do not match their schema.",
                     "Fix or remove the named records in data/raw/ (or set data.on_error to \"skip\"), "
                     "then re-run the gate."),
    "E_NO_DATA": Code(EXIT_BAD_INPUT, "There is no usable data for this gate.",
                      "Put .jsonl/.json files into data/raw/, then run `factory run baseline`."),
    "E_TOO_LONG": Code(EXIT_BAD_INPUT, "Records are longer than model.max_length tokens.",
                       "Raise model.max_length, shorten the named records, or set "
                       "data.on_too_long to \"drop\" in training-config.json."),
    "E_TOO_MANY_REJECTED": Code(EXIT_BAD_INPUT, "More records were rejected than "
                                "data.max_rejected_share allows.",
                                "Read metrics/data-report.json and data/rejected.jsonl; fix the "
                                "data (or the detected format) and re-run the gate."),
    "E_DEPENDENCY": Code(EXIT_BAD_INPUT, "An optional package this data or feature needs is "
                         "not installed.",
                         "Install the package named in the message (pip install ...)."),
    "E_PATH_ESCAPE": Code(EXIT_BAD_INPUT, "A configured path points outside the project.",
                          "Use a path inside the project directory."),
    "E_UNKNOWN_GATE": Code(EXIT_BAD_INPUT, "No gate has that name.",
                           "Gates are: baseline, format, finetune, evaluate, deploy."),
    "E_GATE_ORDER": Code(EXIT_BLOCKED, "A gate was asked to run before the gates it depends on.",
                         "Run `factory next` to see which gate comes first."),
    "E_NOT_BETTER": Code(EXIT_BLOCKED, "The candidate did not beat the baseline.",
                         "Improve data or training (see metrics/verdict.json), then "
                         "`factory run finetune` and `factory run evaluate`."),
    "E_NO_PROMOTION": Code(EXIT_BAD_INPUT, "There is no such promotion to make current.",
                           "`factory promote --list` shows every promotion and which is current."),
    "E_NO_VERDICT": Code(EXIT_BLOCKED, "There is no passing verdict for this checkpoint.",
                         "Run `factory run evaluate` first."),
    "E_VERDICT_STALE": Code(EXIT_BLOCKED, "The verdict was given for a different checkpoint, eval "
                            "split or baseline.",
                            "Run `factory run evaluate` to judge what is there now."),
    "E_LEAKAGE": Code(EXIT_BLOCKED, "Eval records also appear in the training data.",
                      "Remove the duplicates from data/raw/ and run `factory run format`."),
    "E_EVAL_CHANGED": Code(EXIT_BLOCKED, "The frozen eval split was changed on disk.",
                           "Restore data/splits/eval.jsonl, or re-freeze it with "
                           "`factory run baseline --refreeze` (this invalidates every verdict)."),
    "E_PARITY": Code(EXIT_BLOCKED, "An exported model does not behave like the adapter it came from.",
                     "Read .factory/logs/deploy.log; do not ship the export."),
    "E_EXPORT": Code(EXIT_CRASHED, "A model could not be exported to the requested format.",
                     "Read the message: an unsupported architecture or quant type names the "
                     "output to drop from deploy.outputs (or the package to install)."),
    "E_HUB": Code(EXIT_CRASHED, "The Hugging Face Hub refused or failed the upload.",
                  "Check HF_TOKEN (or `hf auth login`) has write access to hub.repo_id, then "
                  "`factory push --dry-run` to see the plan and `factory push` to retry."),
    "E_HUB_AUTH": Code(EXIT_BAD_INPUT, "No Hugging Face token was found for the push.",
                       "Set HF_TOKEN in the environment or run `hf auth login`; the token is "
                       "never written into the project."),
    "E_SERVE": Code(EXIT_BAD_INPUT, "There is no model to serve, or the address cannot be used.",
                    "Deploy a model first (`factory run deploy`) or pass --model <dir>; serve "
                    "binds to 127.0.0.1 unless --host says otherwise."),
    "E_CONFIG_EDIT": Code(EXIT_BAD_INPUT, "factory would have to rewrite a config it does not "
                                          "edit (factory.yaml: its comments would be lost).",
                          "Copy the settings named in the error into factory.yaml by hand."),
    "E_LABEL": Code(EXIT_BAD_INPUT, "Labels or the items to label could not be read.",
                    "Send one JSON object per line, {\"id\": <an id from `factory label --json "
                    "--list`>, \"label\": \"good\" or \"bad\"}; nothing was recorded."),
    "E_LOCKED": Code(EXIT_BUSY, "Another factory process is working on this project.",
                     "Wait for it to finish (see `factory status`), or stop that process."),
    "E_WATCH": Code(EXIT_CRASHED, "The file watcher could not watch a project's folders.",
                    "Run `factory watch --poll` (polling works on any filesystem), or raise the "
                    "inotify limits (sysctl fs.inotify.max_user_watches and max_user_instances)."),
    "E_SCRIPT_FAILED": Code(EXIT_CRASHED, "The gate's script exited with an error.",
                            "Read the log named in the error, fix the cause, and re-run the gate."),
    "E_NAN_LOSS": Code(EXIT_CRASHED, "Training loss became NaN or diverged.",
                       "Lower training.learning_rate (e.g. 1e-4 or 5e-5) in training-config.json."),
    "E_OOM": Code(EXIT_CRASHED, "Training ran out of memory.",
                  "Lower training.batch_size (to 2 or 1) and raise "
                  "training.gradient_accumulation_steps to keep the effective batch; set "
                  "training.gradient_checkpointing true, or lora.load_in_4bit true on a CUDA "
                  "GPU. `factory profile` recommends settings for this machine."),
    "E_BACKEND": Code(EXIT_BLOCKED, "The training backend asked for is not available here.",
                      "training.backend unsloth needs a CUDA GPU and `pip install unsloth`; "
                      "set it to auto to use Unsloth only where it works."),
    "E_PRECHECK": Code(EXIT_BLOCKED, "A pre-training check failed; nothing was trained.",
                       "Run `factory check` and follow the hint of each failed item."),
    "E_REWARD": Code(EXIT_BAD_INPUT, "A reward function failed or did not return one finite "
                                     "score per completion.",
                     "Fix the reward named in the message (its entry under `rewards` in "
                     "training-config.json), then run the gate again."),
    "E_MODEL_LOAD": Code(EXIT_CRASHED, "The model or tokenizer could not be loaded.",
                         "Check model.name in training-config.json: a local folder inside the "
                         "project or a hub id you can reach."),
    "E_STATE_CORRUPT": Code(EXIT_CRASHED, "The project state file cannot be read.",
                            "Inspect .factory/state.json; `factory log` shows the history."),
    "E_INTERRUPTED": Code(EXIT_INTERRUPTED, "The run was interrupted before the gate finished.",
                          "Run the same command again; training resumes from its last "
                          "checkpoint."),
    "E_INTERNAL": Code(EXIT_CRASHED, "An unexpected error inside model-factory.",
                       "Report it with the output of `factory log --json`."),
}


@dataclass
class FactoryError(Exception):
    """An error with a stable code, a message for people and a hint for the next step."""

    code: str
    message: str
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CATALOGUE:
            raise ValueError(f"unknown error code {self.code!r}; add it to factory.errors.CATALOGUE")
        if self.hint is None:
            self.hint = CATALOGUE[self.code].hint
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return CATALOGUE[self.code].exit_code

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint,
                "details": self.details}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def catalogue_markdown() -> str:
    """docs/errors.md, generated from CATALOGUE so the two cannot drift."""
    names = {EXIT_CRASHED: "crashed", EXIT_BAD_INPUT: "bad input", EXIT_BLOCKED: "blocked by a gate",
             EXIT_BUSY: "busy", EXIT_INTERRUPTED: "interrupted"}
    lines = ["# Error codes", "",
             "Every error `factory` reports carries one of these codes. Programs branch on the code",
             "(and on the exit status); the message is for people. With `--json` the error is",
             "`{\"code\", \"message\", \"hint\", \"details\"}` under `error`.", "",
             "| exit | meaning |", "|---|---|"]
    lines += [f"| {code} | {name} |" for code, name in sorted(names.items())]
    lines += ["", "| code | exit | what happened | what to do next |", "|---|---|---|---|"]
    for code, entry in CATALOGUE.items():
        lines.append(f"| `{code}` | {entry.exit_code} | {entry.summary} | {entry.hint} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
