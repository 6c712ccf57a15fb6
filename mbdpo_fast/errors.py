"""Every error a user can cause, in one module (standard library only, importable by anything).

Each is raised with a message that names the input at fault and the fix. The entry points turn
them into one `error: <message>` line on stderr and exit code 2 (`mbdpo_fast.cli.user_errors`);
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Base of the errors caused by a run's input (config, task, files), not by a bug."""


class ConfigError(UserError, ValueError):
    """A configuration value (or a task name) is invalid; the message names the field and the fix."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the configured model."""


class DatasetError(UserError, ValueError):
    """A dataset directory or chunk file is missing or malformed."""


class NoEpisodesError(DatasetError):
    """A replay holds no complete episode to export."""


class ReplayCapacityError(UserError, MemoryError):
    """The replay buffer does not fit the device's memory; the message names a size that fits."""


class TrainingDivergedError(UserError, RuntimeError):
    """A loss became NaN/inf; training stops without overwriting the last good checkpoint."""


class RenderingError(UserError, RuntimeError):
    """Pixel observations asked for where no headless OpenGL backend renders."""


class StorageError(UserError, OSError):
    """A file of the run could not be written (disk full, quota, permissions); the message names the
    file, the cause, and what is still intact."""

    @classmethod
    def writing(cls, path, exc: OSError, what: str = "file") -> "StorageError":
        import errno

        code = errno.errorcode.get(exc.errno, "") if exc.errno else ""
        cause = f"{exc.strerror or exc}{f' ({code})' if code else ''}"
        return cls(f"cannot write the {what} {path}: {cause}")


class AssetError(UserError, FileNotFoundError):
    """A task's assets (meshes, object sets) are not on this machine; the message names the command
    that downloads them (nothing is downloaded without being asked)."""


class WorkerError(RuntimeError):
    """A CPU-suite worker process failed to start or died; the message carries its traceback (not a
    UserError: a worker's failure keeps its traceback)."""
