"""Started by sandbox.run_python as `python -I _guard.py main.py`: installs the audit hook, then
runs main.py as __main__. An audit hook cannot be removed once added, so the code cannot undo it."""
import os
import runpy
import sys

WORKDIR = os.path.dirname(os.path.abspath(sys.argv[1]))
READABLE = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                 sys.base_exec_prefix)} | {WORKDIR})
BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "os.fork", "os.forkpty", "os.kill", "os.killpg", "ctypes.", "_posixsubprocess",
           "pty.", "winreg.", "os.putenv", "os.unsetenv")
CHANGES = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
           "os.chmod", "os.chown", "os.truncate", "os.utime", "shutil.", "os.chdir")


def _inside(path, roots):
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return any(real == r or real.startswith(r + os.sep) for r in roots)


def _hook(event, args):
    if event.startswith(BLOCKED):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode = args[0], args[1]
        if isinstance(path, int):
            return
        writes = mode is not None and any(c in str(mode) for c in "wax+")
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writes = writes or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if not _inside(path, (WORKDIR,) if writes else READABLE + ("/dev/null", "/dev/urandom")):
            raise PermissionError(f"sandbox: no access to {path}")
    elif event.startswith(CHANGES):
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        if not all(_inside(p, (WORKDIR,)) for p in paths):
            raise PermissionError(f"sandbox: {event} outside the sandbox")


target = sys.argv[1]
sys.argv = sys.argv[1:]
sys.addaudithook(_hook)
runpy.run_path(target, run_name="__main__")
