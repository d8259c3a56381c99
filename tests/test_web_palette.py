"""The label palette (edge_har/web/static/palette.js): distinct colours, none like UNKNOWN's grey, readable in both themes.

The colours are read from palette.js itself, so the test checks what the pages use:

* the first 16 (a model's classes; HAPT has 12, the largest bundle here 14) differ pairwise by a CIEDE2000
  ΔE of at least :data:`MIN_PAIR_DE`. A ΔE2000 of 1 to 2 is a just-noticeable difference on large patches
  seen side by side; the colours here are small (a legend swatch of 13 px, a 2-pixel timeline span)
  and compared from memory across the page ("is this bar the same Walk as that strip?"), where a
  difference needs to be several times larger: 12 keeps every pair well apart while 16 colours still
  fit the band of lightness the contrast rule leaves;
* each is at least :data:`MIN_UNKNOWN_DE` from UNKNOWN's grey, so no activity reads as "unknown";
* each has a WCAG contrast ratio of at least 3:1 (WCAG 2.1 SC 1.4.11 for graphics, and 1.4.3 for large
  text such as the Live card's activity name) on the light and on the dark panel background of app.css.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "edge_har" / "web" / "static"
MIN_PAIR_DE = 12.0
MIN_UNKNOWN_DE = 20.0
MIN_CONTRAST = 3.0
FIRST = 16


def css_colour(name: str, dark: bool) -> str:
    """A variable of app.css's light theme (:root) or dark theme (the prefers-color-scheme block)."""
    css = (STATIC / "app.css").read_text()
    dark_block = re.search(r"@media \(prefers-color-scheme: dark\)\s*\{\s*:root\s*\{(.*?)\}", css, re.S)
    assert dark_block, "app.css has no dark theme (@media (prefers-color-scheme: dark) { :root { ... } })"
    light_block = re.search(r"^:root\s*\{(.*?)\}", css, re.S | re.M)
    assert light_block
    block = dark_block.group(1) if dark else light_block.group(1)
    found = re.search(rf"--{name}:\s*(#[0-9a-fA-F]{{6}})\s*;", block)
    assert found, f"app.css: --{name} is not a #rrggbb colour in the {'dark' if dark else 'light'} theme"
    return found.group(1)


def palette() -> tuple[list[str], str]:
    js = (STATIC / "palette.js").read_text()
    listed = re.search(r"const PALETTE = \[(.*?)\];", js, re.S)
    unknown = re.search(r'const UNKNOWN = "(#[0-9a-fA-F]{6})";', js)
    assert listed and unknown, "palette.js: PALETTE or UNKNOWN not found"
    return re.findall(r'"(#[0-9a-fA-F]{6})"', listed.group(1)), unknown.group(1)


def srgb(hex_colour: str) -> tuple[float, float, float]:
    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return r, g, b


def linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_colour: str) -> float:
    r, g, b = (linear(c) for c in srgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def lab(hex_colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour."""
    r, g, b = (linear(c) for c in srgb(hex_colour))
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def ciede2000(c1: tuple[float, float, float], c2: tuple[float, float, float]) -> float:
    """ΔE00 (Sharma, Wu and Dalal 2005), kL = kC = kH = 1."""
    l1, a1, b1 = c1
    l2, a2, b2 = c2
    cbar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(cbar**7 / (cbar**7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    dl, dc = l2 - l1, c2p - c1p
    dh = 0.0
    if c1p * c2p:
        dh = h2p - h1p
        if dh > 180:
            dh -= 360
        elif dh < -180:
            dh += 360
    dhh = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    lbar, cbarp = (l1 + l2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        hbar = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hbar = (h1p + h2p) / 2
    else:
        hbar = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (
        1
        - 0.17 * math.cos(math.radians(hbar - 30))
        + 0.24 * math.cos(math.radians(2 * hbar))
        + 0.32 * math.cos(math.radians(3 * hbar + 6))
        - 0.20 * math.cos(math.radians(4 * hbar - 63))
    )
    dtheta = 30 * math.exp(-(((hbar - 275) / 25) ** 2))
    rc = 2 * math.sqrt(cbarp**7 / (cbarp**7 + 25**7))
    sl = 1 + 0.015 * (lbar - 50) ** 2 / math.sqrt(20 + (lbar - 50) ** 2)
    sc = 1 + 0.045 * cbarp
    sh = 1 + 0.015 * cbarp * t
    rt = -math.sin(math.radians(2 * dtheta)) * rc
    return math.sqrt((dl / sl) ** 2 + (dc / sc) ** 2 + (dhh / sh) ** 2 + rt * (dc / sc) * (dhh / sh))


@pytest.mark.parametrize(
    ("one", "two", "want"),
    [  # pairs from Sharma, Wu and Dalal's published test data
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
        ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
    ],
)
def test_ciede2000_matches_the_published_test_data(one, two, want):
    assert ciede2000(one, two) == pytest.approx(want, abs=1e-4)


def test_the_first_16_colours_are_pairwise_distinct():
    colours, _ = palette()
    assert len(colours) >= FIRST and len(set(colours)) == len(colours)
    close = [
        (a, b, round(ciede2000(lab(a), lab(b)), 1))
        for a, b in itertools.combinations(colours[:FIRST], 2)
        if ciede2000(lab(a), lab(b)) < MIN_PAIR_DE
    ]
    assert not close, f"palette.js: colours closer than ΔE00 {MIN_PAIR_DE}: {close}"


def test_no_colour_looks_like_unknown():
    colours, unknown = palette()
    close = [(c, round(ciede2000(lab(c), lab(unknown)), 1)) for c in colours[:FIRST]]
    assert min(d for _, d in close) >= MIN_UNKNOWN_DE, f"palette.js: too close to UNKNOWN {unknown}: {close}"


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_every_colour_is_readable_on_the_panel(dark):
    panel = css_colour("panel", dark)
    colours, unknown = palette()
    faint = [(c, round(contrast(c, panel), 2)) for c in colours + [unknown] if contrast(c, panel) < MIN_CONTRAST]
    assert not faint, f"palette.js: under {MIN_CONTRAST}:1 on the {'dark' if dark else 'light'} panel {panel}: {faint}"
