"""Case-insensitive text search in SQL, one way for every service: a LIKE pattern matching
what was typed, taken literally (`%`, `_` and `\\` are escaped, so a search for `50%` finds
`50%` and nothing else), lower-cased and in NFC, as e-mail addresses are stored (ADR 0010): a
search typed in NFD still finds them. Use with `escape=LIKE_ESCAPE` and a lower-cased column:

    column.like(like_pattern(search), escape=LIKE_ESCAPE)
"""

from __future__ import annotations

import unicodedata
from typing import Final

LIKE_ESCAPE: Final = "\\"


def like_pattern(text: str, *, anywhere: bool = True) -> str:
    """The pattern of `text` anywhere in the value, or (`anywhere=False`) at its start."""
    folded = unicodedata.normalize("NFC", text.lower())
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if anywhere else f"{escaped}%"
