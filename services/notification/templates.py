"""The Jinja2 templates in `templates/`, one per event (or ad hoc use) and channel: an e-mail is
`email/<name>.subject.txt`, `email/<name>.txt` and `email/<name>.html`; an SMS `sms/<name>.txt`.

Rendered in a sandboxed environment (a template can reach no Python internals), with
StrictUndefined (a missing variable is an error, never an empty string) and the HTML part
autoescaped: a value is data, so `{{ 7*7 }}` in a customer's name is printed as it is, and
`<script>` in it as `&lt;script&gt;`. Templates come only from the repository; callers give
values, never template text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, meta, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from services.notification.domain import single_line

TEMPLATES: Final = Path(__file__).parent / "templates"
EMAIL_PARTS: Final = ("subject.txt", "txt", "html")


class RenderError(Exception):
    """A template could not be rendered with the values given (a missing variable, say)."""


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    name: str
    channel: str  # "email" | "sms"
    variables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


@cache
def environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _files(name: str, channel: str) -> list[str]:
    if channel == "email":
        return [f"email/{name}.{part}" for part in EMAIL_PARTS]
    return [f"{channel}/{name}.txt"]


@cache
def catalogue() -> tuple[TemplateInfo, ...]:
    """Every template, by name then channel, with the variables its parts use."""
    found = [
        (path.name.removesuffix(".subject.txt"), "email")
        for path in (TEMPLATES / "email").glob("*.subject.txt")
    ] + [(path.name.removesuffix(".txt"), "sms") for path in (TEMPLATES / "sms").glob("*.txt")]
    env = environment()
    infos = []
    for name, channel in sorted(found):
        variables: set[str] = set()
        for file in _files(name, channel):
            source = (TEMPLATES / file).read_text(encoding="utf-8")
            variables |= meta.find_undeclared_variables(env.parse(source))
        infos.append(TemplateInfo(name, channel, tuple(sorted(variables))))
    return tuple(infos)


def find(name: str, channel: str) -> TemplateInfo | None:
    return next((t for t in catalogue() if t.name == name and t.channel == channel), None)


def render(name: str, channel: str, variables: dict[str, Any]) -> Rendered:
    """The template's parts with `variables`; RenderError when they do not suffice."""
    env = environment()
    try:
        parts = [env.get_template(file).render(variables) for file in _files(name, channel)]
    except TemplateError as error:
        raise RenderError(f"template {channel}/{name}: {error.message}") from error
    if channel == "email":
        subject, text, html = parts
        return Rendered(single_line(subject), text, html)
    return Rendered(None, parts[0].strip(), None)


def plain_html(text: str) -> str:
    """The HTML part of a plain text: escaped, one paragraph per blank-line-separated block."""
    blocks = [block for block in text.split("\n\n") if block.strip()]
    body = "".join(f"<p>{escape(block)}</p>".replace("\n", "<br>") for block in blocks)
    return f'<!DOCTYPE html>\n<html lang="en"><body>{body}</body></html>\n'
