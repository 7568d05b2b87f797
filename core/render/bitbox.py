"""An entry format as an SVG register picture: one box per field, top bit on the left.

Drawn from an :class:`~pfnmap.arch.EntryFormat`'s fields (name, shift, width), which
:func:`pfnmap.arch.contract.derive_fields` took from the construct layout, so the picture cannot
disagree with the encoding. The docs' arch pages embed these (docs/_ext/pfnmap_layouts.py); the
HTML view draws the same boxes bit by bit in the page's script. Plain text building, no library.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import escape

#: pixels per bit, row height, and the space above (bit numbers) and below (slanted names)
CELL = 22
BOX_H = 30
TOP = 16
#: the fixed part of the room under a row for names that do not fit in their box; each
#: character of the longest such name adds ``SLANT_PER_CHAR``
BELOW = 10
SLANT_PER_CHAR = 5.6
CHAR_W = 6.6  # a monospace character at the picture's font size


def bitbox_svg(
    fields: Iterable[tuple[str, int, int]],
    width_bits: int,
    bits_per_row: int = 32,
    title: str = "",
) -> str:
    """The SVG text. ``fields`` are (name, shift, width); every bit must be in one."""
    fields = sorted(fields, key=lambda f: f[1], reverse=True)
    rows = []
    for row_hi in range(width_bits - 1, -1, -bits_per_row):
        row_lo = max(row_hi - bits_per_row + 1, 0)
        parts = []
        for name, shift, width in fields:
            hi = min(shift + width - 1, row_hi)
            lo = max(shift, row_lo)
            if hi >= lo:
                parts.append((name, hi, lo))
        rows.append((row_hi, row_lo, parts))
    row_bits = min(bits_per_row, width_bits)
    # a slanted name at the right edge reaches past the last box
    longest = max((len(n) for n, _, w in fields if w * CELL < len(n) * CHAR_W + 6), default=0)
    width = row_bits * CELL + 2 + round(longest * SLANT_PER_CHAR * 0.7)
    y = 0.0
    body: list[str] = []
    for row_hi, _row_lo, parts in rows:
        slanted = [n for n, hi, lo in parts if (hi - lo + 1) * CELL < len(n) * CHAR_W + 6]
        below = BELOW + SLANT_PER_CHAR * max((len(n) for n in slanted), default=0)
        top = y + TOP
        for name, hi, lo in parts:
            x = 1 + (row_hi - hi) * CELL
            w = (hi - lo + 1) * CELL
            body.append(
                f'<rect class="field" x="{x}" y="{top}" width="{w}" height="{BOX_H}" '
                f'data-field="{escape(name)}" data-hi="{hi}" data-lo="{lo}"/>'
            )
            label = str(hi) if hi == lo else f"{hi}"
            body.append(f'<text class="num" x="{x + 3}" y="{top - 4}">{label}</text>')
            if hi != lo:
                body.append(
                    f'<text class="num" x="{x + w - 3}" y="{top - 4}" text-anchor="end">{lo}</text>'
                )
            cx = x + w / 2
            if name in slanted:
                ty = top + BOX_H + 10
                body.append(
                    f'<text class="name" x="{cx}" y="{ty}" '
                    f'transform="rotate(55 {cx} {ty})">{escape(name)}</text>'
                )
                body.append(
                    f'<line x1="{cx}" y1="{top + BOX_H - 6}" x2="{cx}" y2="{top + BOX_H + 4}"/>'
                )
            else:
                body.append(
                    f'<text class="name" x="{cx}" y="{top + BOX_H / 2 + 4}" '
                    f'text-anchor="middle">{escape(name)}</text>'
                )
        y = top + BOX_H + below
    height = round(y + 4)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pfnmap-bitbox" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img"'
        + (f' aria-label="{escape(title)}"' if title else "")
        + ">"
    )
    style = (
        "<style>rect.field{fill:#eef3f8;stroke:#1d232a;stroke-width:1.2}"
        "text{font:11px ui-monospace,Menlo,Consolas,monospace;fill:#1d232a}"
        "text.num{font-size:9px;fill:#5b6672}line{stroke:#5b6672}</style>"
    )
    title_el = f"<title>{escape(title)}</title>" if title else ""
    return head + title_el + style + "".join(body) + "</svg>\n"
