"""Fork server ("zygote"): import torch, transformers, trl, ... once, then fork a process per job.

Importing the heavy libraries costs ~5 s per `python -m safedrift <stage>` job. A server imports
them (PRELOAD) without running a torch op or starting a thread pool, and listens on a Unix
socket. Per request it forks a child that takes over the client's stdin/stdout/stderr,
environment and argv and runs `launch.run_stage`; the client (`request`) exits with the child's
status, so the shell, the log redirection and Snakemake see an ordinary process.

A server serves only a client that would have started in its state (`identity`, and the
environment but RUNTIME_ENV); OpenMP, MKL and OpenBLAS read the thread variables as they load,
so a server serves one thread count. Any other client is refused and runs the stage itself.

Protocol: the client sends an 8-byte length, with its fds 0, 1, 2 attached (SCM_RIGHTS), then a
JSON request; the server answers JSON lines: {"refused": why} (nothing ran), or {"forked": pid}
and, when the child ends, {"exit": status}. If the client's end closes first (it was killed),
the server kills the child's process group. A child ends as Python ends, minus the interpreter's
teardown (`exit_child`), and wakes its server as it ends (a pidfd in the server's selector).

On by default for local runs without --software-deployment-method (SAFEDRIFT_ZYGOTE=0 turns it
off): Snakemake's onstart hook starts a server and points the jobs at it; onsuccess/onerror stop
it; it also exits when Snakemake is gone or after IDLE_TIMEOUT without jobs. By hand (all six
THREAD_ENV variables set to 1):
  python -m safedrift.zygote --socket /tmp/z/threads1.sock &
  SAFEDRIFT_ZYGOTE=/tmp/z python -m safedrift <stage> ...
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from safedrift import cpu_pin
from safedrift.launch import run_stage

ENV_VAR = "SAFEDRIFT_ZYGOTE"  # "0": off; unset or "1": Snakemake starts a server; else the socket folder
# Snakemake sets each of these to a job's thread count (snakemake/shell.py).
THREAD_ENV = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
# Set by the shell per command, or (temp folders) read when used: the child resets tempfile's cache.
RUNTIME_ENV = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "TMPDIR", "TMP", "TEMP", "TEMPDIR", ENV_VAR})
# "module" or "module:attr,attr" (transformers and trl import their classes on attribute access).
PRELOAD = (
    "torch", "numpy", "pandas", "datasets:Dataset", "sklearn.linear_model:LogisticRegression",
    "transformers:AutoConfig,AutoModelForCausalLM,AutoTokenizer,LlamaConfig,LlamaForCausalLM,"
    "PreTrainedTokenizerFast,Trainer,TrainingArguments,TrainerCallback",
    "trl:SFTConfig,SFTTrainer,DPOConfig,DPOTrainer", "trl.experimental.orpo:ORPOConfig,ORPOTrainer",
    "peft:LoraConfig,PeftModel,get_peft_model",
)
# pyarrow's jemalloc purger: jemalloc's fork handlers switch it off in the child. Any other
# thread left by preloading makes forking unsafe, e.g. numpy's OpenBLAS pool, started at import
# when OPENBLAS_NUM_THREADS > 1: such a server refuses to start, and its jobs run in-process.
FORK_SAFE_THREADS = frozenset({"jemalloc_bg_thd"})
CONNECT_TIMEOUT, REPLY_TIMEOUT = 5.0, 60.0  # seconds; past them the client runs the stage itself
IDLE_TIMEOUT = 3600.0  # seconds without a job after which a server exits
POLL = 0.05  # seconds between the server's checks for its parent, idleness and (without pidfds) ended children
CHILD_ENDED = "child ended"  # selector data of a child's pidfd
WORKFLOW_DIR = Path(".snakemake") / "safedrift-zygote"  # <snakemake pid>/threads<n>.{sock,log}


class ZygoteError(RuntimeError):
    """A server could not start, or preloading left state that a forked child could not use."""


# --------------------------------------------------------------------------- client

def socket_path(folder: str, env) -> str | None:
    """The socket of the server for a process with environment `env`; None if none could serve it."""
    counts = {env.get(k) for k in THREAD_ENV}
    if folder in ("", "0", "1") or len(counts) != 1 or not str(counts.pop()).isdigit():
        return None
    return os.path.join(folder, f"threads{env[THREAD_ENV[0]]}.sock")


def identity() -> dict:
    """What a process must share with a server, besides its environment, to be served."""
    umask = os.umask(0)
    os.umask(umask)
    return json.loads(json.dumps({  # as the other side reads it (tuples become lists)
        # The program, not the name it was called by (Snakemake runs as python3, jobs as python).
        "interpreter": os.path.realpath(sys.executable), "prefix": sys.prefix, "flags": list(sys.flags),
        "xoptions": sys._xoptions, "warnoptions": sys.warnoptions, "sys.path": sys.path, "cwd": os.getcwd(),
        "umask": umask, "nice": os.getpriority(os.PRIO_PROCESS, 0), "affinity": sorted(os.sched_getaffinity(0)),
    }))


def request(stage: str, argv: list[str]) -> int | None:
    """Run `stage` in a child of this process's server: its exit status, or None if nothing ran."""
    path = socket_path(os.environ.get(ENV_VAR, ""), os.environ)
    if path is None:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.settimeout(CONNECT_TIMEOUT)
            conn.connect(path)
            payload = json.dumps({"stage": stage, "argv": argv, "sys_argv": sys.argv, "env": dict(os.environ),
                                  "identity": identity()}).encode()
            socket.send_fds(conn, [struct.pack("!Q", len(payload))], [0, 1, 2])
            conn.sendall(payload)
            conn.settimeout(REPLY_TIMEOUT)
            replies = conn.makefile("rb")
            if "forked" not in _read_message(replies):
                return None  # refused, or no answer in time (a late child is killed as we close)
            conn.settimeout(None)  # a stage may run for hours
        except OSError:  # no server, a stale socket, a closed stdio fd: nothing ran
            return None
        reply = _read_message(replies)
    if "exit" not in reply:
        print(f"safedrift {stage}: the zygote server ({path}) stopped while the stage ran, so its exit status "
              f"is unknown. Rerun the job, or set {ENV_VAR}=0 to run stages in-process.", file=sys.stderr)
        return 1
    return int(reply["exit"])


def _read_message(stream) -> dict:
    """The next message; {} if the other side closed or failed."""
    try:
        line = stream.readline()
        return json.loads(line) if line.endswith(b"\n") else {}
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- server

def preload(specs) -> None:
    for spec in specs:
        module_name, _, attrs = spec.partition(":")
        module = importlib.import_module(module_name)
        for attr in filter(None, attrs.split(",")):
            getattr(module, attr)


def check_fork_safe() -> None:
    """Raise ZygoteError unless every other thread is fork-safe and CUDA is untouched."""
    names = [Path(f"/proc/self/task/{tid}/comm").read_text().strip()
             for tid in os.listdir("/proc/self/task") if int(tid) != os.getpid()]
    if set(names) - FORK_SAFE_THREADS:
        raise ZygoteError(f"preloading started threads {names}; a forked child would lack them")
    torch = sys.modules.get("torch")
    if (torch is not None and torch.cuda.is_initialized()) or "libcuda.so" in Path("/proc/self/maps").read_text():
        raise ZygoteError("preloading initialized CUDA; forked children could not use the GPU")


def refusal(req: dict, server_identity: dict, server_env: dict) -> str | None:
    """Why a server must not serve `req`, or None. Names variables, never their values (secrets)."""
    theirs = req["identity"]
    for key in sorted(server_identity.keys() | theirs.keys()):
        if theirs.get(key) != server_identity.get(key):
            return f"{key} differs: job {theirs.get(key)!r}, server {server_identity.get(key)!r}"
    env = req["env"]
    differing = sorted(k for k in env.keys() | server_env.keys()
                       if k not in RUNTIME_ENV and env.get(k) != server_env.get(k))
    return "environment differs in " + ", ".join(differing) if differing else None


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} zygote[{os.getpid()}] {message}", file=sys.stderr, flush=True)


class Server:
    """Serves on `path` until idle, stopped or orphaned; `run` returns a request only in a forked child."""

    def __init__(self, path: str, identity: dict, env: dict, parent_pid: int | None, idle_timeout: float):
        self.path, self.identity, self.env = path, identity, env
        self.parent_pid, self.idle_timeout = parent_pid, idle_timeout
        self.children: dict[int, socket.socket] = {}  # pid -> connection to its client
        self.pidfds: dict[int, int] = {}  # pid -> its pidfd (Linux), registered in the selector
        # Bound under another name and renamed when ready: a job that starts earlier finds no socket.
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        Path(f"{path}.tmp").unlink(missing_ok=True)
        self.listener.bind(f"{path}.tmp")
        self.listener.listen(64)
        os.rename(f"{path}.tmp", path)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)

    def run(self) -> tuple[dict, list[int]] | None:
        last_busy = time.monotonic()
        while self.listener.fileno() != -1 or self.children:
            for key, _ in self.selector.select(timeout=POLL):
                if key.fileobj is self.listener:
                    job = self._accept()
                    if job is not None:
                        return job
                elif key.data is CHILD_ENDED:
                    pass  # reaped below
                elif not _recv_or_eof(key.fileobj):  # a client closed before its child ended: it was killed
                    _log(f"the client of {key.data} is gone; killing its process group")
                    self.selector.unregister(key.fileobj)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(key.data, signal.SIGKILL)
            self._reap()
            if self.children:
                last_busy = time.monotonic()
            orphaned = self.parent_pid is not None and os.getppid() != self.parent_pid
            idle = time.monotonic() - last_busy > self.idle_timeout
            if (orphaned or idle) and self.listener.fileno() != -1:
                _log("stopping: " + ("Snakemake is gone" if orphaned else "idle"))
                self.selector.unregister(self.listener)
                self.listener.close()
                Path(self.path).unlink(missing_ok=True)
        return None

    def _accept(self) -> tuple[dict, list[int]] | None:
        conn, _ = self.listener.accept()
        req, stdio = {"stage": "?"}, []
        try:
            conn.settimeout(REPLY_TIMEOUT)
            req, stdio = _read_request(conn)
            reason = refusal(req, self.identity, self.env)
        except (OSError, ValueError, KeyError) as e:
            reason = f"bad request ({e!r})"
        if reason is None:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                self.selector.close()
                for sock in (self.listener, *self.children.values()):
                    sock.close()
                for pidfd in self.pidfds.values():
                    os.close(pidfd)
                # Its own process group, so that a kill takes what the stage started, too. It keeps its
                # client's connection open: should this server die, the client waits for the child.
                os.setpgid(0, 0)
                conn.detach()
                return req, stdio
            with contextlib.suppress(OSError):  # also here: a kill may come before the child's own call
                os.setpgid(pid, pid)
            self.children[pid] = conn
            self.selector.register(conn, selectors.EVENT_READ, pid)
            if (pidfd := _pidfd(pid)) is not None:  # readable when the child ends: reaped without waiting a POLL
                self.pidfds[pid] = pidfd
                self.selector.register(pidfd, selectors.EVENT_READ, CHILD_ENDED)
            _send(conn, {"forked": pid})
            _log(f"forked {pid} for {req['stage']} {' '.join(req['argv'])}")
        else:
            _log(f"refused {req['stage']}: {reason}")
            _send(conn, {"refused": reason})
            conn.close()
        for fd in stdio:
            os.close(fd)
        return None

    def _reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            conn = self.children.pop(pid)
            if (pidfd := self.pidfds.pop(pid, None)) is not None:
                self.selector.unregister(pidfd)
                os.close(pidfd)
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # as a shell reports a process killed by a signal
            if conn.fileno() in self.selector.get_map():
                self.selector.unregister(conn)
            _send(conn, {"exit": code})
            conn.close()
            _log(f"child {pid} exited {code}")


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, 8, 3)
    try:
        if len(fds) != 3:
            raise ValueError("expected the client's stdin, stdout and stderr")
        with conn.makefile("rb") as stream:
            header += stream.read(8 - len(header))
            return json.loads(stream.read(struct.unpack("!Q", header)[0])), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when `pid` ends (Linux >= 5.3), or None: then the
    server finds ended children every POLL seconds."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _send(conn: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):  # the client is gone
        conn.sendall(json.dumps(message).encode() + b"\n")


def _recv_or_eof(conn: socket.socket) -> bytes:
    try:
        return conn.recv(1)
    except OSError:
        return b""


def become_client(req: dict, stdio: list[int], import_env: dict) -> None:
    """In a forked child: take the client's stdio, environment and argv, and fresh random state."""
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # as Python sets it at start-up
    os.environ.clear()
    os.environ.update({**req["env"], **import_env})  # as the client's own imports would have left it
    sys.argv = req["sys_argv"]
    tempfile.tempdir = None  # cached by the server's imports; recomputed from the job's TMPDIR
    # A fresh process seeds these from OS entropy (torch >= 2.13 too); a child would share the
    # server's state. Python's `random` reseeds itself after a fork. CUDA stays uninitialized.
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].default_generator.seed()


def exit_child(job) -> None:
    """Run `job()` (it returns an exit status), then end this forked child without the interpreter's
    teardown. Never returns.

    Python's finalization decrefs every object the server preloaded; each decref writes to a page
    the child shares with the server, so the kernel copies it: 0.2 to 0.8 s per job, most of a
    light job's time (benchmarks/startup.py: world.tokenizer took 0.52 s a job with it, 0.17 s
    without). Everything else a Python exit does is kept, in its order: an uncaught exception's
    traceback (status 1) or SystemExit's status, then waiting for non-daemon threads, atexit
    handlers, flushing stdout/stderr; then os._exit, as multiprocessing's forked children end
    (threading._shutdown and atexit._run_exitfuncs are the interpreter's own shutdown steps).
    Objects are not finalized: a stage closes what it writes (every stage writes through `with`)."""
    try:
        status = job()
    except SystemExit as e:
        status = exit_status(e.code)
    except BaseException as e:
        sys.excepthook(type(e), e, e.__traceback__)
        status = 128 + signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1  # as a shell reports Python's
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def exit_status(code) -> int:
    """The status `sys.exit(code)` ends a process with (printing a non-integer code, as Python does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def serve(path: str, parent_pid: int | None = None, idle_timeout: float = IDLE_TIMEOUT, specs=PRELOAD) -> int:
    """Preload, then serve on `path`. Returns the server's exit status; a forked child ends in exit_child."""
    # As `python -m safedrift` does in every client: the pins must be in place before torch loads.
    cpu_pin.apply()
    start_identity, start_env = identity(), dict(os.environ)  # what clients must match
    t0 = time.monotonic()
    # Libraries that ask torch.cuda.is_available() at import would initialize the CUDA driver,
    # which no forked child could then use; NVML answers without it. (Children get the client's env.)
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    preload(specs)
    check_fork_safe()
    import_env = {k: v for k, v in os.environ.items()  # what the imports set, e.g. KMP_INIT_AT_FORK
                  if start_env.get(k) != v and k != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    # Children's collections (accelerate runs one per training run) skip the preloaded objects:
    # their pages stay shared.
    gc.freeze()
    server = Server(path, start_identity, start_env, parent_pid, idle_timeout)
    _log(f"serving on {path} (preloaded in {time.monotonic() - t0:.1f}s)")
    job = server.run()
    if job is None:
        return 0
    become_client(*job, import_env)
    exit_child(lambda: run_stage(job[0]["stage"], job[0]["argv"]))


# --------------------------------------------------------------------------- lifecycle

class Servers:
    """Server processes, one per thread count, with sockets and logs in `folder`."""

    def __init__(self, folder, threads=(1,), env: dict | None = None, parent_pid: int | None = None,
                 idle_timeout: float = IDLE_TIMEOUT, specs=PRELOAD):
        """Start them for jobs whose environment is `env` plus a thread count. Returns at once: a
        socket appears when its server has preloaded (seconds); jobs before run in-process."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**(os.environ if env is None else env), ENV_VAR: str(self.folder)}
        self.processes: dict[Path, subprocess.Popen] = {}  # socket -> server
        for n in sorted(set(threads)):
            sock = self.folder / f"threads{n}.sock"
            with open(sock.with_suffix(".log"), "w") as log:
                self.processes[sock] = subprocess.Popen(
                    [sys.executable, "-m", "safedrift.zygote", "--socket", str(sock), "--idle-timeout",
                     str(idle_timeout), *(["--parent-pid", str(parent_pid)] if parent_pid else []),
                     "--preload", *specs],
                    env={**env, **{k: str(n) for k in THREAD_ENV}}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True)  # Ctrl-C goes to the jobs, not to the servers

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(sock.exists() for sock in self.processes):
            failed = [sock for sock, p in self.processes.items() if p.poll() is not None]
            if failed or time.monotonic() > deadline:
                log = (failed or list(self.processes))[0].with_suffix(".log")
                raise ZygoteError(f"zygote server did not start; {log} ends: {log.read_text()[-2000:]}")
            time.sleep(POLL)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM ends a server at once; children still running then report their status to nobody."""
        for sock, process in self.processes.items():
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            sock.unlink(missing_ok=True)


_workflow_servers: Servers | None = None


def start_for_workflow(threads=(1,)) -> None:
    """Snakemake onstart: unless SAFEDRIFT_ZYGOTE=0, start servers and point the jobs at them.

    The socket folder is relative (a socket path holds at most 107 bytes): jobs run in the
    working directory, and one that does not is refused anyway."""
    global _workflow_servers
    if os.environ.get(ENV_VAR, "1") != "1":
        return
    for run_dir in WORKFLOW_DIR.glob("*"):  # logs of earlier runs, whose servers have exited
        if run_dir.name.isdigit() and not Path(f"/proc/{run_dir.name}").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
    _workflow_servers = Servers(WORKFLOW_DIR / str(os.getpid()), threads, parent_pid=os.getpid())
    os.environ[ENV_VAR] = str(_workflow_servers.folder)
    atexit.register(stop_for_workflow)  # Snakemake runs no hook when it fails with an exception


def stop_for_workflow() -> None:
    """Snakemake onsuccess/onerror: stop this run's servers (their logs stay)."""
    global _workflow_servers
    if _workflow_servers is not None:
        _workflow_servers.stop()
        os.environ[ENV_VAR] = "1"
        _workflow_servers = None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m safedrift.zygote", description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True, help="Unix socket path to serve on")
    p.add_argument("--parent-pid", type=int, help="exit when this process (Snakemake) is gone")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT, help="exit after this many seconds without jobs")
    p.add_argument("--preload", nargs="*", default=list(PRELOAD), help="modules to import: module[:attr,...]")
    a = p.parse_args(argv)
    return serve(a.socket, a.parent_pid, a.idle_timeout, a.preload)


if __name__ == "__main__":
    sys.exit(main())
