"""The kit's foundation: plain shapes and rules that import nothing else of the kit."""

from services.platform.core import emails as emails
