"""A tiny SVG writer for `make compare`'s chart: horizontal bar panels, no plotting library.

A chart is a stack of panels. A panel has one row per lab; a row has one or more slots (thin
horizontal bars one above the other); a slot has one or more layers drawn over each other, so a
hollow "what the model predicts" bar can sit behind the measured one, or segments can be stacked
(each layer has its own start). Every number drawn is a number the caller measured.
"""
import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

# Okabe-Ito: distinguishable with the common kinds of colour blindness, and in greyscale print.
BLUE, ORANGE, GREEN, PINK, SKY, VERMILION, YELLOW, GREY = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
SPLIT_COLOURS = [BLUE, ORANGE, GREEN, PINK, SKY, VERMILION, YELLOW, GREY]
FAILURE_RED = "#C62828"
FONT = "font-family='DejaVu Sans, Verdana, Arial, sans-serif'"


@dataclass
class Layer:
    value: float
    fill: str = BLUE
    stroke: str = "none"
    dash: bool = False
    start: float = 0.0
    text: str = ""          # a label drawn inside the segment (stacked bars), if it fits


@dataclass
class Slot:
    layers: list
    label: str = ""         # drawn right of the slot's longest layer
    failures: str = ""      # what failed and why, drawn in red after the label


@dataclass
class Row:
    label: str
    sublabel: str = ""
    slots: list = field(default_factory=list)


@dataclass
class Panel:
    title: str
    unit: str
    rows: list
    legend: list = field(default_factory=list)   # [(Layer-like style, text)]
    max_value: float = None
    note: str = ""


def nice_step(span, ticks=5):
    """A 1/2/5 x 10^k step giving about `ticks` gridlines over span."""
    if span <= 0:
        return 1
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_tick(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


class Svg:
    def __init__(self):
        self.parts = []

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=12, anchor="start", weight="normal", fill="#222", italic=False):
        style = " font-style='italic'" if italic else ""
        self.add(f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
                 f"font-weight='{weight}' fill='{fill}'{style} {FONT}>{escape(s)}</text>")

    def rect(self, x, y, w, h, fill, stroke="none", dash=False, title=""):
        extra = " stroke-dasharray='4 2'" if dash else ""
        sw = " stroke-width='1.5'" if stroke != "none" else ""
        inner = f"<title>{escape(title)}</title>" if title else ""
        self.add(f"<rect x='{x:.1f}' y='{y:.1f}' width='{max(w, 0):.1f}' height='{h:.1f}' "
                 f"fill='{fill}' stroke='{stroke}'{sw}{extra}>{inner}</rect>")

    def line(self, x1, y1, x2, y2, stroke="#ddd", width=1):
        self.add(f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' "
                 f"stroke='{stroke}' stroke-width='{width}'/>")

    def render(self, width, height):
        return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
                f"viewBox='0 0 {width} {height}'>\n<rect width='100%' height='100%' fill='white'/>\n"
                + "\n".join(self.parts) + "\n</svg>\n")


WIDTH = 960
LABEL_W = 190      # the lab names on the left
RIGHT_PAD = 230    # room for the value labels (and failures) right of the longest bar
SLOT_H = 13
SLOT_GAP = 2
ROW_GAP = 9
ROW_MIN_H = 26     # room for a lab's name and its stage under it


def draw_panel(svg, panel, y):
    """Draws one panel from height y; returns the y below it."""
    x0, x1 = LABEL_W, WIDTH - RIGHT_PAD
    svg.text(16, y + 16, panel.title, size=15, weight="bold")
    # Legend on the title's line, right-aligned chips.
    lx = WIDTH - 16
    for style, text in reversed(panel.legend):
        w = 7 * len(text) + 26
        lx -= w
        svg.rect(lx, y + 6, 14, 11, style.fill, style.stroke, style.dash)
        svg.text(lx + 19, y + 16, text, size=11)
    y += 26
    if panel.note:
        svg.text(16, y + 8, panel.note, size=11, fill="#555", italic=True)
        y += 16

    top = y + 16
    values = [l.start + l.value for r in panel.rows for s in r.slots for l in s.layers if l.value is not None]
    vmax = panel.max_value or (max(values) if values else 1) or 1
    step = nice_step(vmax)
    vmax = math.ceil(vmax / step) * step if not panel.max_value else panel.max_value
    scale = (x1 - x0) / vmax

    heights = [max(ROW_MIN_H, len(r.slots) * (SLOT_H + SLOT_GAP) - SLOT_GAP) for r in panel.rows]
    bottom = top + sum(heights) + ROW_GAP * max(len(panel.rows) - 1, 0)
    # Gridlines and their values, above the bars.
    v = 0.0
    while v <= vmax + 1e-9:
        x = x0 + v * scale
        svg.line(x, top - 4, x, bottom + 2, stroke="#e4e4e4")
        svg.text(x, top - 7, fmt_tick(v) + (panel.unit if v == vmax else ""), size=10,
                 anchor="middle", fill="#666")
        v += step

    ry = top
    for row, h in zip(panel.rows, heights):
        mid = ry + h / 2
        svg.text(x0 - 10, mid + (-1 if row.sublabel else 4), row.label, size=12, anchor="end", weight="bold")
        if row.sublabel:
            svg.text(x0 - 10, mid + 11, row.sublabel, size=10, anchor="end", fill="#666")
        slots_h = len(row.slots) * (SLOT_H + SLOT_GAP) - SLOT_GAP
        sy = ry + (h - slots_h) / 2
        for slot in row.slots:
            end = 0.0
            for layer in slot.layers:
                if layer.value is None:
                    continue
                bx = x0 + layer.start * scale
                bw = layer.value * scale
                svg.rect(bx, sy, bw, SLOT_H, layer.fill, layer.stroke, layer.dash)
                if layer.text and bw > 7 * len(layer.text) + 4:
                    svg.text(bx + bw / 2, sy + SLOT_H - 3, layer.text, size=10, anchor="middle", fill="white")
                end = max(end, layer.start + layer.value)
            if slot.label:
                svg.text(x0 + end * scale + 5, sy + SLOT_H - 2, slot.label, size=11)
            if slot.failures:
                fx = x0 + end * scale + 5 + (6.3 * len(slot.label) + 6 if slot.label else 0)
                w = 6.6 * len(slot.failures)
                if fx + w > WIDTH - 8:  # no room after a long bar: inside its end, on white
                    fx = max(x0 + end * scale - 6 - w, x0 + 6) if end * scale > w + 12 else WIDTH - 8 - w
                    svg.rect(fx - 4, sy - 1, w + 8, SLOT_H + 2, "white", stroke=FAILURE_RED)
                svg.text(fx, sy + SLOT_H - 2, slot.failures, size=11, fill=FAILURE_RED, weight="bold")
            sy += SLOT_H + SLOT_GAP
        ry += h + ROW_GAP
    svg.line(x0, top - 4, x0, bottom + 2, stroke="#888")
    return bottom + 22


def chart(title, subtitle, panels, footer=""):
    """The whole chart as SVG text."""
    svg = Svg()
    svg.text(16, 26, title, size=18, weight="bold")
    y = 34
    if subtitle:
        svg.text(16, 50, subtitle, size=12, fill="#444")
        y = 60
    for panel in panels:
        y = draw_panel(svg, panel, y + 6)
    if footer:
        svg.text(16, y + 4, footer, size=10, fill="#666")
        y += 14
    return svg.render(WIDTH, int(y + 6))
