"""A Markdown report rendered as one self-contained HTML file: images embedded, no scripts, no network.

Reports carry strings a user chose (dataset, class, model and file names), so nothing in them becomes live
HTML: raw HTML in the Markdown is shown as text, a Content-Security-Policy forbids scripts and any resource
but the embedded images, and only PNG files inside the report's own folder are embedded.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
code { background: #f5f5f5; padding: 0.1em 0.3em; border-radius: 3px; }
h1 { border-bottom: 2px solid #ddd; } h2 { border-bottom: 1px solid #eee; }
"""


class MissingImageError(FileNotFoundError):
    pass


_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _embed_images(body: str, base: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        source = html.unescape(match.group(2))
        path = (base / source).resolve()
        if path.suffix != ".png" or not path.is_relative_to(base.resolve()) or source.startswith(("/", "data:")):
            return f"[image not embedded: {html.escape(source)}]"  # a link the report's writer did not make
        if not path.is_file():
            raise MissingImageError(f"the report links {source}, which is not at {path}")
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{match.group(1)}data:image/png;base64,{encoded}{match.group(3)}"

    return re.sub(r'(<img[^>]*?src=")([^"]+)("[^>]*>)', replace, body)


def markdown_to_html(text: str, base: Path, title: str) -> str:
    """Render ``text`` (GitHub-style tables, code; raw HTML shown as text) and inline every PNG it links under
    ``base``."""
    renderer = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"])
    renderer.preprocessors.deregister("html_block")
    renderer.inlinePatterns.deregister("html")
    body = renderer.convert(text)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{_embed_images(body, base)}\n</body></html>\n"
    )
