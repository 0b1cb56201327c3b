"""HTML mail to the text a reader sees: hidden parts (comments, scripts, `display:none`) dropped.

Hidden text is where prompt injections hide, so it goes with everything inside it. Kept apart from
triage.message so that BeautifulSoup (0.1 s to load) loads only when a message has HTML.
"""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup, Comment, MarkupResemblesLocatorWarning, Tag

# A body that happens to look like a URL or a file name is still a body: no warning on stderr.
warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)

# Elements whose text is never meant to be read.
_INVISIBLE_TAGS = ("script", "style", "head", "title", "template", "noscript")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0", re.I)


def visible_text(html: str) -> str:
    """The text of an HTML body as a reader sees it: one line per line, links with their address."""
    soup = BeautifulSoup(html, "html.parser")
    links: list[Tag] = []
    breaks: list[Tag] = []
    # One walk of the tree (a find_all per kind of node walked it six times): what is hidden goes
    # with everything inside it; links and line breaks are rewritten once the hidden text is gone.
    parents: list[Tag] = [soup]
    while parents:
        for node in list(parents.pop().contents):
            if isinstance(node, Comment):
                node.extract()
            elif not isinstance(node, Tag):
                continue
            elif _is_hidden(node):
                node.decompose()
            else:
                if node.name == "a" and node.has_attr("href"):
                    links.append(node)
                elif node.name == "br":
                    breaks.append(node)
                parents.append(node)
    for link in links:
        href = str(link["href"])
        if href.startswith(("http://", "https://")) and href != link.get_text(strip=True):
            link.append(f" ({href})")
    for br in breaks:
        br.replace_with("\n")
    text = soup.get_text("\n")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(lines)


def _is_hidden(tag: Tag) -> bool:
    if tag.name in _INVISIBLE_TAGS or tag.has_attr("hidden"):
        return True
    style = tag.get("style")
    return isinstance(style, str) and _HIDDEN_STYLE.search(style) is not None
