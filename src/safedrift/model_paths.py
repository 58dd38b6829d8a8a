"""Where a model path points: a local model folder or a Hugging Face hub id, and what is wrong with it.

Its own module, imported by config validation and by every job that loads a model (`models`), so
that a job's code inputs (`pipeline.source_closure`) hold these few lines and not the config
validation: editing a validation message reruns no training."""

from __future__ import annotations

import re
from pathlib import Path

# A Hugging Face repo id: org/name, of letters, digits, '-', '_' and '.' (no '..', no leading '.').
HUB_ID = re.compile(r"[A-Za-z0-9][\w-]*(\.[\w-]+)*/[A-Za-z0-9][\w-]*(\.[\w-]+)*")
MODEL_FILES = ("config.json", "adapter_config.json")
# First path components that name a local folder even when it is missing: no hub account can be
# called `models` (huggingface.co/models is the hub's list of models), and it is where model folders
# are conventionally downloaded.
LOCAL_FOLDERS = ("models",)


def shown_path(path: str, root: Path) -> str:
    """The path as written, and the folder a relative path is read from."""
    return path if Path(path).expanduser().is_absolute() else f"{path} (in {root})"


def local_path_reason(path: str, root: Path | str = ".") -> str | None:
    """Why a model path shaped like a hub id (org/name) is read as a local folder instead, or None
    (then it is a hub id). The rule: a path is a local folder when it starts with `.`, `/` or `~`, or
    when its first component is `models` (LOCAL_FOLDERS) or a folder that exists in `root` (the
    workflow folder). So `models/Qwen2.5-0.5B-Instruct`, or `configs/qwen-0.5b`, mistyped, is a missing
    folder, found now, rather than a hub id that the first job would try to download."""
    if path.startswith((".", "/", "~")):
        return "it starts with ., / or ~"
    first = path.split("/", 1)[0]
    if first in LOCAL_FOLDERS:
        return f"no hub account is called {first}"
    if (Path(root).absolute() / first).is_dir():
        return f"{first}/ is a folder here"
    return None


def model_path_problem(path: str, root: Path | str = ".", fix: str = "fix the path or download the model",
                       files: tuple[str, ...] = MODEL_FILES) -> str | None:
    """What is wrong with a model path (a folder with one of `files`, or else a hub id), or None.

    A path that names no folder is a hub id when it has the shape org/name and local_path_reason
    finds no reason to read it as a local folder: a path that starts with `.`, `/` or `~`, or whose
    first component is `models` or a folder in `root`, is a local folder, and it must exist."""
    root = Path(root).absolute()
    full = root / Path(path).expanduser()
    if full.is_dir():
        if not any((full / f).is_file() for f in files):
            return f"folder {path} has no {' or '.join(files)}; point it at a Hugging Face model folder"
        return None
    if full.exists():
        return f"{path} is a file; point it at the model folder"
    if HUB_ID.fullmatch(path) and ".." not in path:
        reason = local_path_reason(path, root)
        if reason is None:
            return None
        return (f"no folder {shown_path(path, root)}, which names a local folder, not a hub id, as {reason} (a path "
                f"that starts with ., / or ~, or whose first folder is models/ or a folder here, is local); {fix}")
    return f"no folder {shown_path(path, root)} and not a hub id (org/name); {fix}"
