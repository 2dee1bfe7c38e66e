"""Run an answer's code and then the example's tests in the sandbox, and say whether they passed.

Passing means more than exit status 0: a model under a reward learns quickly that
`sys.exit(0)` or `os._exit(0)` before the tests is the cheapest way to exit cleanly. So the
answer and the tests run inside a small harness that
  * treats SystemExit raised by the answer as the end of the answer, not of the program, so the
    tests run anyway;
  * prints a fresh random token, which it read from stdin before any model code ran (it is never
    in a file the code could read), only after the last test line has run.
A run passes when it exits 0 and its stdout ends with the token. Model code could still dig the
token out of the harness's frames; this closes the accidental shortcuts, not a determined attack.
"""
from __future__ import annotations

import secrets

from factory.rewards import sandbox

_HARNESS = '''\
import sys


def _main(answer, tests, run=exec, build=compile):
    # run and build are bound before the answer could replace the builtins they come from
    token = sys.stdin.readline().strip()
    sys.stdin.close()
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # the answer's prints cannot fake the token
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        run(build(answer, "answer.py", "exec"), scope)
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise
    run(build(tests, "tests.py", "exec"), scope)
    real_stdout.write(token + "\\n")
    real_stdout.flush()


_main(ANSWER, TESTS)
'''


def passes(code: str, tests: str, *, timeout_s: float, memory_mb: int) -> bool:
    """True when `code` followed by `tests` runs to the end, exit status 0, within the limits."""
    token = secrets.token_hex(16)
    program = _HARNESS.replace("_main(ANSWER, TESTS)", f"_main({code!r}, {tests!r})")
    result = sandbox.run_python(program, timeout_s=timeout_s, memory_mb=memory_mb,
                                stdin=token + "\n")
    return result.ok and result.stdout.endswith(token + "\n")
