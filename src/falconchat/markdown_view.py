"""Rich's Markdown with copy-paste-friendly code blocks and no hidden hyperlinks."""

from __future__ import annotations

from typing import ClassVar

from rich.markdown import CodeBlock, Markdown
from rich.syntax import Syntax


class PlainCodeBlock(CodeBlock):
    """Highlighted code with no padding or background fill, so a copied block
    is exactly the code."""

    def __rich_console__(self, console, options):
        code = str(self.text).rstrip()
        yield Syntax(code, self.lexer_name, theme=self.theme, word_wrap=True, padding=0, background_color="default")


class ReplyMarkdown(Markdown):
    elements: ClassVar = {**Markdown.elements, "fence": PlainCodeBlock, "code_block": PlainCodeBlock}

    def __init__(self, text: str):
        # Links are shown with their URL, never as OSC 8 hyperlinks that hide where they go.
        super().__init__(text, hyperlinks=False)
        # A line break in a reply is a line break on screen, as chat UIs show it (a poem's
        # lines stay lines): Markdown's soft breaks become hard ones.
        for token in self.parsed:
            for child in token.children or ():
                if child.type == "softbreak":
                    child.type = "hardbreak"
