"""Kiln's error types, each carrying a message a user can act on."""

from __future__ import annotations


class KilnError(Exception):
    """Base of Kiln's errors; `issues` lists every problem found (kiln.diagnose.Issue)."""

    def __init__(self, message: str = "", issues=()):
        super().__init__(message)
        self.issues = list(issues)


class KilnImportError(KilnError):
    """The model could not be captured or imported into MLIR."""


class KilnCompileError(KilnError):
    """A pass pipeline or IREE failed; the message carries a reproducer command."""


class KilnLoadError(KilnError, ValueError):
    """A file or buffer is not a loadable Kiln/IREE artifact."""


_EXPORT_HINTS = (
    ("data-dependent", "data-dependent control flow or shapes: use torch.cond / torch.where "
                       "instead of Python `if` on tensor values, and avoid `.item()` in forward"),
    (".item()", "`.item()` in forward makes a value data-dependent: keep it a tensor"),
    ("Dynamic control flow", "use torch.cond for branches that depend on tensor values"),
)


def unsupported_export_error(error: Exception, issues=()) -> KilnImportError:
    """A KilnImportError for a model torch.export rejected: every problem draft_export found
    (`issues`, kiln.diagnose.Issue) with its source line and fix, then torch's own message."""
    from kiln.diagnose import format_issues

    message = str(error).strip()
    if issues:
        # Each issue has its line and fix; torch's own text (often 20+ lines of debugging
        # advice) stays on the exception's __cause__, with its first line quoted here.
        first = message.splitlines()[0] if message else ""
        text = format_issues("torch.export could not capture the model", issues)
        text += f"\n(torch.export: {type(error).__name__}: {first})"
        return KilnImportError(text, issues)
    hints = [hint for needle, hint in _EXPORT_HINTS if needle.lower() in message.lower()]
    text = f"torch.export could not capture the model: {type(error).__name__}: {message}"
    if hints:
        text += "\nhint: " + "\nhint: ".join(hints)
    return KilnImportError(text, issues)
