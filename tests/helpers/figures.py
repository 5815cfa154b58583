"""Whether a matplotlib figure's labels collide, measured as matplotlib renders them (``get_window_extent``)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.text import Text


def clipped_tick_labels(fig: Figure) -> set[int]:
    """Tick labels matplotlib made for ticks outside the axes' limits: it does not draw them."""
    out: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - 1e-9 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-9 * abs(hi - lo):
                    out.update({id(tick.label1), id(tick.label2)})
    return out


def overlapping_labels(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of drawn, non-empty text labels whose rendered extents intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = clipped_tick_labels(fig)
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
