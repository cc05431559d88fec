#!/usr/bin/env python3
"""make timeline: what every process did, and what every request met, on one time axis.

    make timeline LAB=lab09                    run lab09's scenario under load, draw build/timeline/lab09.svg
    make timeline LAB=lab08 OUT=notes/x.svg    the same, written where OUT says
    python3 tools/timeline.py --log LOG [--trace TRACE] [--actions ACTIONS] --out X.svg
                                               draw any event log (and any ./loadgen --trace file)

The drawing has one lane per process the log names (the master, each worker, each replacement,
any other role such as a notifier): when it was born (fork), came online, started listening,
served, crashed (uncaught), told the master (suicide), drained, and exited, with the cause (exit
code or signal). A restart draws a dashed line from the old worker to its replacement. A red band
marks every moment when no worker was accepting. Below the lanes, every request of the load
client is one mark at its start time, as tall as its latency (log scale), coloured like the
worker that answered it (X-Worker-Pid); failed requests are red. Marks that fall on the same
pixel column with the same colour are merged into one (the tallest), and say how many requests
they stand for (data-n).

Inputs:
  LOG      the lab's stderr: `[ROLE PID] EVENT key=value… t=SECONDS.mmm`; lines without t= are skipped
  TRACE    `./loadgen --trace FILE`: START END STATUS PID ERROR per line (wall-clock seconds)
  ACTIONS  what the scenario did, one per line: `SECONDS text` (drawn as arrows on top)

A scenario (SCENARIOS below) starts the lab with --port 0, starts ./loadgen with --trace, acts
(kill -9, GET /crash, SIGHUP) and waits for the log events that show the act took effect, each
wait bounded; then it stops the load and the lab and draws. Standard library only.
"""
import argparse
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labinfo  # noqa: E402
import svg  # noqa: E402

# --- reading the inputs ---------------------------------------------------------------------
LINE = re.compile(r"^\[(?P<role>[\w-]+) (?P<pid>\d+)\] (?P<event>\S+)(?P<rest>.*?)\s+t=(?P<t>\d+(?:\.\d+)?)\s*$")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
# Keys of a master's line that name another process: the event is that process's too.
PID_KEYS = ("worker", "notifier", "child")


@dataclass
class Event:
    index: int          # its line number in the log (0-based, counting only parsed lines)
    role: str           # who wrote it: master, worker, notifier…
    pid: int
    name: str           # fork, online, listening, uncaught, exit…
    fields: dict
    t: float            # wall-clock seconds

    def subject(self):
        """The pid this event is about: the worker a master's line names, else the writer."""
        for key in PID_KEYS:
            v = self.fields.get(key, "")
            if v.isdigit():
                return int(v), key
        return self.pid, self.role


def parse_log(text):
    events = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        rest = m.group("rest")
        fields = {k: v[1:-1] if v.startswith('"') else v for k, v in FIELD.findall(rest)}
        bare = FIELD.sub("", rest).split()
        if bare:
            fields["_"] = " ".join(bare)  # words without a key: `shutdown complete code=0`
        events.append(Event(len(events), m.group("role"), int(m.group("pid")), m.group("event"), fields,
                            float(m.group("t"))))
    return events


@dataclass
class Request:
    start: float
    end: float
    status: int         # 0: no response
    pid: int            # 0: unknown
    error: str          # "" when it got a response

    @property
    def latency_ms(self):
        return (self.end - self.start) * 1000

    @property
    def failed(self):
        return bool(self.error) or not 200 <= self.status < 400


def parse_trace(text):
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 5 or line.startswith("#"):
            continue
        try:
            start, end = float(parts[0]), float(parts[1])
        except ValueError:
            continue
        status = int(parts[2]) if parts[2].isdigit() else 0
        pid = int(parts[3]) if parts[3].isdigit() else 0
        out.append(Request(start, end, status, pid, "" if parts[4] == "-" else parts[4]))
    return out


def parse_actions(text):
    out = []
    for line in text.splitlines():
        t, _, what = line.strip().partition(" ")
        try:
            out.append((float(t), what.strip()))
        except ValueError:
            continue
    return out


# --- from events to lanes -------------------------------------------------------------------
@dataclass
class Lane:
    pid: int
    role: str
    seen: float                 # the first line that names it
    events: list = field(default_factory=list)
    born: float = None          # fork
    listening: float = None     # first listening (or online, for roles that never listen)
    stopped: float = None       # stopped accepting: uncaught, suicide, drain, disconnect, exit
    exited: float = None
    exit_text: str = ""
    replaces: int = None        # the worker it was forked to replace
    replaced_by: int = None

    @property
    def first(self):
        return self.events[0].t if self.events else self.seen


STOP_ACCEPTING = ("uncaught", "suicide", "drain", "disconnect", "exit", "retire", "kill-timeout")


def exit_cause(f):
    if f.get("signal", "none") not in ("none", ""):
        return f"killed by {f['signal']}"
    return f"exit {f.get('code', '?')}"


def build_lanes(events):
    """One lane per process, the master first, then in order of first appearance."""
    lanes = {}

    def lane(pid, role, t):
        if pid not in lanes:
            lanes[pid] = Lane(pid, role, t)
        return lanes[pid]

    for ev in events:
        lane(ev.pid, ev.role, ev.t)  # every process that writes a line has a lane, even the master
        pid, key = ev.subject()
        own = pid == ev.pid
        ln = lane(pid, ev.role if own else key, ev.t)
        if own and ln.role != ev.role:
            ln.role = ev.role  # its own lines say what it is (a notifier forked as a child)
        ln.events.append(ev)
        if ev.name == "fork" and not own and ln.born is None:
            ln.born = ev.t
        elif ev.name == "listening" and ln.listening is None:
            ln.listening = ev.t
        if ev.name in STOP_ACCEPTING and ln.listening is not None and ln.stopped is None:
            ln.stopped = ev.t
        if ev.name == "exit" and not own:
            ln.exited = ev.t
            ln.exit_text = exit_cause(ev.fields)
        # `restart worker=OLD replacement=NEW` (labs 08-10), or any line naming both (a reload).
        if not own and ev.fields.get("replacement", "").isdigit():
            ln.replaced_by = int(ev.fields["replacement"])
            lane(ln.replaced_by, "worker", ev.t).replaces = pid
        if ev.name == "shutdown" and own:
            if "complete" in ev.fields.get("_", "").split():
                ln.exited = ev.t
                ln.exit_text = f"exit {ev.fields.get('code', '?')}"
            elif ln.stopped is None:
                ln.stopped = ev.t
    for ln in lanes.values():
        if ln.listening is None and ln.role != "worker":
            # The master, a notifier, a lab without workers: running from its first line (or online).
            online = [e.t for e in ln.events if e.name == "online"]
            ln.listening = online[0] if online else ln.seen
    return sorted(lanes.values(), key=lambda ln: (ln.role != "master", ln.born or ln.first, ln.first))


def no_worker_accepting(lanes, start, end):
    """The intervals, within [start, end], when no worker lane was accepting."""
    workers = [ln for ln in lanes if ln.role == "worker" and ln.listening is not None]
    if not workers:
        return []
    first = min(ln.listening for ln in workers)
    changes = []
    for ln in workers:
        changes.append((ln.listening, +1))
        stop = ln.stopped if ln.stopped is not None else ln.exited
        if stop is not None:
            changes.append((stop, -1))
    changes.sort(key=lambda c: (c[0], -c[1]))
    gaps, serving, gap_start = [], 0, None
    for t, d in changes:
        serving += d
        if serving == 0 and gap_start is None and t >= first:
            gap_start = t
        elif serving > 0 and gap_start is not None:
            gaps.append((gap_start, t))
            gap_start = None
    if gap_start is not None:
        gaps.append((gap_start, end))
    return [(max(a, start), min(b, end)) for a, b in gaps if b > start and a < end and b > a]


# --- labels ---------------------------------------------------------------------------------
def event_label(ev, lane_pid):
    """A few words for one event, on the lane of the process it concerns."""
    f = ev.fields
    n = ev.name
    if n == "fork":
        return "fork" if lane_pid != ev.pid else f"fork {' '.join(f'{k}={v}' for k, v in f.items())}"
    if n == "uncaught":
        return "uncaught"
    if n == "drain":
        w = f.get("waiting")
        return f"drain ({w})" if w is not None else "drain"
    if n == "drained":
        return "drained"
    if n == "exit" and lane_pid != ev.pid:
        return exit_cause(f)
    if n == "restart" and lane_pid != ev.pid:
        return f"restart → {f.get('replacement', '?')}"
    if n == "suicide":
        return "suicide"
    if n == "giveup":
        return f"giveup ({f.get('restarts', '?')} restarts in {f.get('during_ms', '?')} ms)"
    if n == "shutdown":
        if "reason" in f:
            return f"shutdown: {f['reason']}"
        if "signal" in f:
            return f"shutdown ({f['signal']})"
        if "code" in f:
            return f"exit {f['code']}"
    if n == "redeal":
        return f"redeal {f.get('connections', '?')} conn."
    if n == "reload":
        what = f.get("_", "")
        took = f" in {f['ms']} ms" if "ms" in f else ""
        return f"reload {what}{took} (generation {f.get('generation', '?')})".replace("  ", " ")
    if n == "kill-timeout":
        return f"drain cut after {f.get('ms', '?')} ms"
    return n


# Events left out of the labels (still in the drawing's data- attributes): they add nothing a
# reader needs next to the events around them.
QUIET = ("disconnect",)

# Events drawn as a glyph on a lane; the rest are in the label only (and in data- attributes).
GLYPHS = {"fork": "birth", "listening": "listening", "uncaught": "crash", "suicide": "suicide",
          "exit": "exit", "giveup": "giveup", "shutdown": "shutdown", "reload": "reload"}


# --- drawing --------------------------------------------------------------------------------
WIDTH = 1000
LEFT = 160          # lane names
RIGHT = 24
LANE_H = 48
BAR_H = 12
REQ_H = 170         # the request panel's plot height
FAIL_RED = "#D7191C"
GAP_RED = "#FBE3E3"
PID_COLOURS = [svg.BLUE, svg.ORANGE, svg.GREEN, svg.PINK, svg.SKY, "#8C6D31", "#7570B3", "#1B9E77",
               "#E7298A", "#666666", "#A6761D", "#17BECF"]
MASTER_COLOUR = "#444444"
ACTION_COLOUR = "#6A3D9A"
ACTION_ROWS = 3


def nice_seconds(span):
    """A tick step of 1/2/5 x 10^k seconds, about 8 ticks."""
    return svg.nice_step(span, 8)


def fmt_s(v, step):
    digits = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return f"{v:.{digits}f} s"


class Drawing(svg.Svg):
    def group(self, cls, **data):
        attrs = "".join(f" data-{k.replace('_', '-')}={quoteattr(str(v))}" for k, v in data.items())
        self.add(f"<g class={quoteattr(cls)}{attrs}>")

    def end(self):
        self.add("</g>")

    def circle(self, x, y, r, fill, stroke="white", title=""):
        inner = f"<title>{escape(title)}</title>" if title else ""
        self.add(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{r}' fill='{fill}' stroke='{stroke}' stroke-width='1'>"
                 f"{inner}</circle>")

    def path(self, d, fill="none", stroke="#222", width=1.0, dash="", title=""):
        extra = f" stroke-dasharray='{dash}'" if dash else ""
        inner = f"<title>{escape(title)}</title>" if title else ""
        self.add(f"<path d='{d}' fill='{fill}' stroke='{stroke}' stroke-width='{width}'{extra}>{inner}</path>")


def glyph(d, kind, x, y, colour):
    """A small symbol for one kind of event, centred on (x, y)."""
    if kind == "birth":
        d.circle(x, y, 4, "white", stroke=colour)
    elif kind == "listening":
        d.path(f"M{x - 4:.1f},{y - 5:.1f} L{x + 4:.1f},{y:.1f} L{x - 4:.1f},{y + 5:.1f} Z", fill=colour, stroke="white")
    elif kind == "crash":
        d.path(f"M{x - 5:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 5:.1f} M{x - 5:.1f},{y + 5:.1f} L{x + 5:.1f},{y - 5:.1f}",
               stroke=FAIL_RED, width=2.5)
    elif kind == "suicide":
        d.path(f"M{x:.1f},{y - 6:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 6:.1f} L{x - 5:.1f},{y:.1f} Z",
               fill="#FFD92F", stroke="#222")
    elif kind in ("exit", "shutdown", "giveup"):
        d.path(f"M{x:.1f},{y - 7:.1f} L{x:.1f},{y + 7:.1f}", stroke="#222", width=2.5)
    elif kind == "reload":
        d.circle(x, y, 4, "#FFD92F", stroke="#222")


def draw(events, requests, actions=(), title="", subtitle="", start=None, end=None, source=""):
    """The timeline as SVG text."""
    lanes = build_lanes(events)
    times = [e.t for e in events] + [r.start for r in requests] + [r.end for r in requests] + [a[0] for a in actions]
    if not times:
        raise ValueError("nothing to draw: the log has no line with t= and the trace is empty")
    t0 = start if start is not None else min(times)
    t1 = end if end is not None else max(times)
    pad = max((t1 - t0) * 0.01, 0.001)
    t0, t1 = t0 - pad, t1 + pad
    x0, x1 = LEFT, WIDTH - RIGHT
    scale = (x1 - x0) / (t1 - t0)

    def X(t):
        return x0 + (min(max(t, t0), t1) - t0) * scale

    colours = {}
    others = [ln for ln in lanes if ln.role != "master"]
    for i, ln in enumerate(others):
        colours[ln.pid] = PID_COLOURS[i % len(PID_COLOURS)]
    for ln in lanes:
        colours.setdefault(ln.pid, MASTER_COLOUR)

    d = Drawing()
    y = 28
    d.text(16, y, title or "timeline", size=18, weight="bold")
    if subtitle:
        y += 20
        d.text(16, y, subtitle, size=12, fill="#444")
    y += 14

    # The time axis: ticks relative to the first instant drawn.
    origin = t0 + pad
    step = nice_seconds(t1 - t0)
    axis_top = y + 30

    # Legend line.
    lx = 16
    legend = [("birth", "fork"), ("listening", "listening"), ("crash", "uncaught exception"),
              ("suicide", "suicide message"), ("exit", "exit / shutdown")]
    ly = y + 4
    for kind, text in legend:
        glyph(d, kind, lx + 6, ly, "#444")
        d.text(lx + 16, ly + 4, text, size=11, fill="#333")
        lx += 26 + 6.2 * len(text)
    d.rect(lx, ly - 6, 22, 12, GAP_RED)
    d.text(lx + 27, ly + 4, "no worker accepting", size=11, fill="#333")
    lx += 150
    d.path(f"M{lx:.1f},{ly:.1f} L{lx + 22:.1f},{ly:.1f}", stroke="#555", dash="3 3")
    d.text(lx + 27, ly + 4, "replaced by", size=11, fill="#333")

    y = axis_top + 14
    lanes_top = y
    action_h = 16 + 12 * ACTION_ROWS if actions else 0
    lanes_h = action_h + LANE_H * len(lanes)
    req_top = lanes_top + lanes_h + 34
    req_bottom = req_top + REQ_H if requests else lanes_top + lanes_h
    # Gridlines and tick labels over the whole height.
    k = math.ceil((t0 - origin) / step)
    while origin + k * step <= t1:
        t = origin + k * step
        x = X(t)
        d.line(x, axis_top + 4, x, req_bottom, stroke="#ececec")
        d.text(x, axis_top, fmt_s(k * step, step), size=10, anchor="middle", fill="#666")
        k += 1
    d.text(x0 - 10, axis_top, "time →", size=10, anchor="end", fill="#666")

    # Moments with no worker accepting: a band over lanes and requests.
    gaps = no_worker_accepting(lanes, t0, t1)
    master_gone = min((ln.exited for ln in lanes if ln.role == "master" and ln.exited is not None), default=None)
    for a, b in gaps:
        d.group("gap", start=f"{a:.3f}", end=f"{b:.3f}", ms=f"{(b - a) * 1000:.0f}")
        d.rect(X(a), lanes_top, max(X(b) - X(a), 1.5), req_bottom - lanes_top, GAP_RED,
               title=f"no worker accepting for {(b - a) * 1000:.0f} ms")
        text = f"no worker accepting: {(b - a) * 1000:.0f} ms"
        if master_gone is not None and a >= master_gone - 0.002:
            text = "the master has exited: connections are refused"
        if X(b) - X(a) > 6.5 * len(text):
            d.text((X(a) + X(b)) / 2, req_top + 14, text, size=11, anchor="middle", fill=FAIL_RED, weight="bold")
        else:
            d.text(X(a) - 4, req_top + 14, text, size=11, anchor="end", fill=FAIL_RED, weight="bold")
        d.end()

    # What the scenario did.
    if actions:
        ay = lanes_top + 16
        d.text(x0 - 10, ay + 4, "the scenario", size=12, anchor="end", weight="bold", fill=ACTION_COLOUR)
        row_ends = [-1e9] * ACTION_ROWS
        for t, what in actions:
            x = X(t)
            # The first text line where this label clears the one before it.
            row = next((i for i, e in enumerate(row_ends) if x + 6 > e), ACTION_ROWS - 1)
            row_ends[row] = x + 6 + 6.2 * len(what)
            d.group("action", t=f"{t:.3f}", text=what)
            d.path(f"M{x:.1f},{ay - 4:.1f} L{x:.1f},{req_bottom:.1f}", stroke=ACTION_COLOUR, width=1, dash="2 3")
            d.path(f"M{x - 4:.1f},{ay - 9:.1f} L{x + 4:.1f},{ay - 9:.1f} L{x:.1f},{ay - 3:.1f} Z", fill=ACTION_COLOUR,
                   stroke="none")
            flip = x + 6 + 6.2 * len(what) > x1
            d.text(x - 6 if flip else x + 6, ay + 1 + 12 * row, what, size=11, fill=ACTION_COLOUR,
                   anchor="end" if flip else "start")
            d.end()

    # One lane per process.
    lane_y = {}
    for i, ln in enumerate(lanes):
        top = lanes_top + action_h + i * LANE_H
        mid = top + 27
        lane_y[ln.pid] = mid
        if i % 2 == 0:
            d.rect(0, top, WIDTH, LANE_H, "#f7f7f7")
    # Restart connectors first, so bars and glyphs sit on top of them.
    for ln in lanes:
        if ln.replaced_by in lane_y:
            ev = next((e for e in ln.events if "replacement" in e.fields), None)
            if ev:
                x = X(ev.t)
                d.path(f"M{x:.1f},{lane_y[ln.pid]:.1f} L{x:.1f},{lane_y[ln.replaced_by]:.1f}", stroke="#555",
                       dash="3 3", title=f"{ln.pid} replaced by {ln.replaced_by}")
    for i, ln in enumerate(lanes):
        mid = lane_y[ln.pid]
        colour = colours[ln.pid]
        sub = ""
        if ln.replaces:
            sub = f"replaces {ln.replaces}"
        elif ln.role == "master":
            sub = "master"
        d.group("lane", pid=ln.pid, role=ln.role, events=len(ln.events))
        name = ln.role if ln.role != "master" else "master"
        d.text(x0 - 10, mid - 2, f"{name} {ln.pid}", size=12, anchor="end", weight="bold", fill=colour)
        if sub and ln.role != "master":
            d.text(x0 - 10, mid + 11, sub, size=10, anchor="end", fill="#666")
        begin = ln.born if ln.born is not None else ln.seen
        finish = ln.exited if ln.exited is not None else t1
        serve_from = ln.listening if ln.listening is not None else None
        stop = ln.stopped if ln.stopped is not None else finish
        # Starting: thin; serving: full; draining: hatched (lighter).
        d.rect(X(begin), mid - 2, X(serve_from if serve_from is not None else finish) - X(begin), 4, "#bbb",
               title=f"{ln.pid} starting")
        if serve_from is not None:
            d.rect(X(serve_from), mid - BAR_H / 2, X(stop) - X(serve_from), BAR_H, colour,
                   title=f"{ln.pid} {'accepting' if ln.role == 'worker' else 'running'}")
            if stop < finish:
                d.rect(X(stop), mid - BAR_H / 2, X(finish) - X(stop), BAR_H, colour,
                       title=f"{ln.pid} draining: answers what it has, accepts nothing")
                d.rect(X(stop), mid - BAR_H / 2, X(finish) - X(stop), BAR_H, "url(#hatch)")
        if ln.exited is None:  # still running when the drawing ends
            d.path(f"M{X(t1) - 6:.1f},{mid - 6:.1f} L{X(t1):.1f},{mid:.1f} L{X(t1) - 6:.1f},{mid + 6:.1f}",
                   stroke=colour, width=1.5)
        # Events: a glyph for each kind worth a symbol; labels for clusters of close events.
        clusters = []
        for ev in ln.events:
            x = X(ev.t)
            label = event_label(ev, ln.pid)
            if ev.name in QUIET or ev.name == "restart" and ln.replaced_by in lane_y:
                continue  # the dashed connector already says it
            if clusters and x - clusters[-1]["x_last"] < 7:
                c = clusters[-1]
                if label not in c["labels"]:
                    c["labels"].append(label)
                c["x_last"] = x
            else:
                clusters.append({"x": x, "x_last": x, "labels": [label]})
        for ev in ln.events:
            x = X(ev.t)
            d.group("event", pid=ln.pid, event=ev.name, t=f"{ev.t:.3f}", line=ev.index, x=f"{x:.2f}")
            kind = GLYPHS.get(ev.name)
            if kind and not (ev.name == "listening" and ln.role == "master"):
                glyph(d, kind, x, mid, colour if kind != "birth" else colour)
            d.end()
        # Labels above the bar, or below it where the one above would overlap; near the right
        # edge a label ends at its event instead of starting there.
        row_end = [-1e9, -1e9]
        for c in clusters:
            text = " · ".join(c["labels"])
            w = 5.7 * len(text)
            flip = c["x"] + w > x1
            left = c["x"] - w if flip else c["x"]
            row = 0 if left > row_end[0] + 4 else 1 if left > row_end[1] + 4 else 0
            row_end[row] = left + w
            ty = mid - BAR_H / 2 - 4 if row == 0 else mid + BAR_H / 2 + 11
            d.text(c["x"], ty, text, size=10, fill="#333", anchor="end" if flip else "start")
        if ln.exited is not None and ln.exit_text:
            d.add(f"<desc>{escape(ln.exit_text)}</desc>")
        d.end()

    # Requests: one mark per request (merged per pixel column and colour), height = latency.
    if requests:
        summary = request_summary(requests)
        d.text(16, req_top - 14, "Requests: one mark per request at its start, as tall as its latency (log scale), "
               "coloured by the worker that answered; red: failed",
               size=12, weight="bold")
        lat = [max(r.latency_ms, 0.01) for r in requests]
        lo = 10 ** math.floor(math.log10(max(min(lat), 0.01)))
        hi = 10 ** math.ceil(math.log10(max(max(lat), lo * 10)))
        span = math.log10(hi) - math.log10(lo)

        def Y(ms):
            return req_top + REQ_H - (math.log10(max(ms, lo)) - math.log10(lo)) / span * REQ_H

        v = lo
        while v <= hi * 1.0001:
            yy = Y(v)
            d.line(x0, yy, x1, yy, stroke="#e4e4e4")
            d.text(x0 - 6, yy + 4, f"{v:g} ms", size=10, anchor="end", fill="#666")
            v *= 10
        d.line(x0, req_top + REQ_H, x1, req_top + REQ_H, stroke="#888")
        marks = {}
        for r in requests:
            key = (int(X(r.start)), r.failed, 0 if r.failed else r.pid)
            m = marks.setdefault(key, [r, 0])
            m[1] += 1
            if r.latency_ms > m[0].latency_ms:
                m[0] = r
        # Successes first, failures on top. A request ten times slower than the median gets a cap,
        # so a lone slow one stands out even beside a vertical line.
        typical = sorted(lat)[len(lat) // 2]
        for (col, failed, pid), (r, n) in sorted(marks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            colour = FAIL_RED if failed else colours.get(pid, "#999")
            cls = "req failed" if failed else "req"
            what = r.error or (f"HTTP {r.status}" if failed else f"{r.status} from {pid}")
            d.add(f"<line class='{cls}' data-n='{n}' data-pid='{pid}' data-t='{r.start:.6f}' "
                  f"data-ms='{r.latency_ms:.3f}' x1='{col + 0.5:.1f}' x2='{col + 0.5:.1f}' "
                  f"y1='{req_top + REQ_H:.1f}' y2='{Y(r.latency_ms):.1f}' stroke='{colour}' "
                  f"stroke-width='{2.2 if failed else 1.4}'><title>{escape(what)}, {r.latency_ms:.1f} ms"
                  f"{f' (the longest of {n} here)' if n > 1 else ''}</title></line>")
            if r.latency_ms > 10 * typical:
                d.add(f"<circle class='cap' cx='{col + 0.5:.1f}' cy='{Y(r.latency_ms):.1f}' r='2.6' fill='{colour}'/>")
        # Who answered: one chip per pid, and the failures by kind.
        ly = req_bottom + 22
        lx = x0
        for pid, count in summary["per_pid"]:
            text = f"{pid}: {count}"
            d.rect(lx, ly - 9, 10, 10, colours.get(pid, "#999"))
            d.text(lx + 14, ly, text, size=11)
            lx += 24 + 6.4 * len(text)
        if summary["failed"]:
            text = f"failed: {summary['failed']} (" + ", ".join(
                f"{n} {k}" + (f": {FAILURE_WORDS[k]}" if k in FAILURE_WORDS else "") for k, n in summary["kinds"]) + ")"
            d.rect(lx, ly - 9, 10, 10, FAIL_RED)
            d.text(lx + 14, ly, text, size=11, fill=FAIL_RED, weight="bold")
        else:
            d.text(lx, ly, "no request failed", size=11, fill="#333")
        d.text(16, ly, f"{len(requests)} requests", size=11, weight="bold")
        req_bottom = ly + 4

    y = req_bottom + 20
    footer = "Drawn by tools/timeline.py" + (f" from {source}" if source else "") + \
        f". Time 0 = {time.strftime('%H:%M:%S', time.localtime(origin))}.{int(origin * 1000) % 1000:03d} " \
        "(wall clock of the event log's t=)."
    d.text(16, y, footer, size=10, fill="#666")
    defs = ("<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
            "patternTransform='rotate(45)'><rect width='6' height='6' fill='white' fill-opacity='0.35'/>"
            "<line x1='0' y1='0' x2='0' y2='6' stroke='white' stroke-width='3'/></pattern></defs>")
    d.parts.insert(0, defs)
    return d.render(WIDTH, int(y + 12))


# What each of loadgen's error kinds means, in the legend.
FAILURE_WORDS = {"connect": "refused, nothing listening", "reset": "closed mid-request",
                 "timeout": "no answer in time", "bad_response": "not HTTP"}


def request_summary(requests):
    per_pid = {}
    kinds = {}
    for r in requests:
        if r.failed:
            k = r.error or f"HTTP {r.status}"
            kinds[k] = kinds.get(k, 0) + 1
        else:
            per_pid[r.pid] = per_pid.get(r.pid, 0) + 1
    return {"per_pid": sorted(per_pid.items()), "failed": sum(kinds.values()),
            "kinds": sorted(kinds.items(), key=lambda kv: -kv[1])}


# --- scenarios ------------------------------------------------------------------------------
class ScenarioError(Exception):
    """A scenario step that did not happen in time; the message says which, with the log."""


class Run:
    """A lab under load, with the helpers a scenario's steps use. Every wait is for a log event
    (or a response), with a deadline; nothing here sleeps to let something happen."""

    def __init__(self, lab, running, trace_path, actions):
        self.lab, self.running, self.actions = lab, running, actions
        self.trace_path = trace_path
        self.load = None

    # what the scenario did, for the drawing
    def act(self, what):
        self.actions.append((time.time(), what))

    def log(self):
        return self.running.log_text()

    def events(self, pattern):
        rx = re.compile(pattern)
        return [m for line in self.log().splitlines() if (m := rx.search(line))]

    def wait_log(self, pattern, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(pattern)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise ScenarioError(f"waited {timeout:g} s for {count} x /{pattern}/; the log:\n{self.log()}")
            time.sleep(0.01)

    def workers(self):
        """The workers listening now: forked, listening, not yet stopped or gone."""
        alive = []
        for ln in build_lanes(parse_log(self.log())):
            if ln.role == "worker" and ln.listening is not None and ln.stopped is None and ln.exited is None:
                alive.append(ln.pid)
        return alive

    def hold(self, seconds):
        """Lets the load run on for a moment, so the picture shows the steady state around an
        act. A window to look at, not a wait for something to happen."""
        time.sleep(seconds)

    # the load
    def start_load(self, path, connections, keepalive=False):
        argv = [str(self.lab.root / "loadgen"), "--connections", str(connections), "--duration", "60",
                "--timeout", "10000", "--trace", str(self.trace_path), "--json"]
        self.load = subprocess.Popen(argv + (["--keepalive"] if keepalive else []) + [self.running.url + path],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.act(f"load: {connections} × GET {path}")

    def stop_load(self):
        if self.load and self.load.poll() is None:
            self.load.send_signal(signal.SIGINT)  # loadgen stops, writes its trace and report
        if self.load:
            try:
                self.load.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.load.kill()
                self.load.communicate()

    # acts
    def connect(self, timeout=5.0):
        s = socket.create_connection((self.running.host, self.running.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def aim(self, pids, per_worker, attempts=300):
        """Kept-alive connections sorted by the worker that serves them ({pid: [socket…]}): a
        connection belongs to one worker for its life, so this is how an act reaches a worker."""
        got = {pid: [] for pid in pids}
        for _ in range(attempts):
            if all(len(v) >= per_worker for v in got.values()):
                return got
            s = self.connect()
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: timeline\r\n\r\n")
            status, headers = read_head(s)
            pid = int(headers.get("x-worker-pid", "0"))
            if status == 200 and pid in got and len(got[pid]) < per_worker:
                got[pid].append(s)
            else:
                s.close()
        for socks in got.values():
            for s in socks:
                s.close()
        raise ScenarioError(f"could not reach every worker {pids}")

    def kill(self, pid, sig=signal.SIGKILL):
        os.kill(pid, sig)
        self.act(f"kill -{signal.Signals(sig).name[3:]} {pid}")

    def signal_master(self, sig):
        os.kill(self.running.pid, sig)
        self.act(f"kill -{signal.Signals(sig).name[3:]} master")

    def crash_any(self):
        """GET /crash on a fresh connection: whichever worker accepts it crashes."""
        try:
            with self.connect(timeout=3) as s:
                s.sendall(b"GET /crash HTTP/1.1\r\nHost: timeline\r\n\r\n")
                self.act("GET /crash")
                read_head(s)
        except OSError:
            pass  # refused or reset: nobody is left to crash, or the crash closed it

    def crash_every_worker(self, sleep_ms):
        """Every worker gets a GET /sleep, then a GET /crash, on connections it already serves:
        each crashes with a request in flight."""
        pids = self.workers()
        conns = self.aim(pids, 2)
        for pid in pids:
            conns[pid][0].sendall(f"GET /sleep?ms={sleep_ms} HTTP/1.1\r\nHost: timeline\r\n\r\n".encode())
        self.act(f"{len(pids)} × GET /sleep?ms={sleep_ms}")
        for pid in pids:
            conns[pid][1].sendall(b"GET /crash HTTP/1.1\r\nHost: timeline\r\n\r\n")
        self.act(f"GET /crash on each of {len(pids)} workers")
        return pids, conns


def read_head(s):
    """The status and headers of the next response on s (the body is left unread); (0, {}) if
    the server closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = s.recv(4096)
        except OSError:
            return 0, {}
        if not chunk:
            return 0, {}
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = head[0].split()
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), headers


def kill9_one_worker(run):
    """lab07: the master deals connections in turn; kill -9 one worker under load. The master
    sees it exit by SIGKILL, deals what that worker had queued to the others, and serves on with
    one worker fewer: lab07 does not restart."""
    run.hold(0.4)
    victim = run.workers()[0]
    run.kill(victim)
    run.wait_log(rf"exit worker={victim} code=none signal=SIGKILL")
    run.hold(0.4)


def crash_every_worker(run, sleep_ms=800):
    """labs 08-09: every worker crashes while it holds a /sleep. lab08 replaces a worker when it
    exits, after its drain: until then no one accepts (the gap). lab09 forks the replacement when
    the worker says it is dying: the gap closes."""
    run.hold(0.4)
    pids, conns = run.crash_every_worker(sleep_ms)
    for pid in pids:
        run.wait_log(rf"exit worker={pid} code=1", timeout=sleep_ms / 1000 + 10)
        run.wait_log(rf"restart worker={pid} replacement=\d+")
    replacements = [int(m.group(1)) for pid in pids for m in run.events(rf"restart worker={pid} replacement=(\d+)")]
    for pid in replacements:
        run.wait_log(rf"listening worker={pid} ")
    for socks in conns.values():
        for s in socks:
            s.close()
    run.hold(0.4)


def crash_loop_to_giveup(run, most=12):
    """lab10: a worker crashes again and again; after --limit restarts within --during ms the
    master gives up: no more replacements; when the last worker is gone it exits 1."""
    run.hold(0.3)
    for _ in range(most):
        if run.running.proc.poll() is not None or run.events(r"shutdown reason=giveup"):
            break
        either = r"uncaught error=|shutdown complete"  # a crash, or the master gone meanwhile
        before = len(run.events(either))
        run.crash_any()
        run.wait_log(either, count=before + 1, timeout=5)
        if not run.events(r"giveup"):
            # The replacement is up: let it serve a moment, so each crash stands apart.
            run.wait_log(r"listening worker=", count=len(run.events(r"\] fork worker=")))
            run.hold(0.15)
    run.wait_log(r"shutdown complete code=1", timeout=15)
    # No hold: with the master gone every request fails at once, and the trace would fill with them.


def rolling_reload(run):
    """lab14: SIGHUP; each worker is replaced by one that listens before the old one retires."""
    run.hold(0.4)
    run.signal_master(signal.SIGHUP)
    run.wait_log(r"reload done generation=\d+", timeout=20)
    run.hold(0.4)


@dataclass
class Scenario:
    lab: str
    what: str                   # the subtitle: what the picture shows
    act: object                 # act(run)
    args: tuple = ()
    load_path: str = "/sleep?ms=5"
    connections: int = 8


SCENARIOS = {s.lab: s for s in [
    Scenario("lab07", "kill -9 one of 3 workers under load: only what it had in flight fails; the master deals on to the 2 left",
             kill9_one_worker, ("--workers", "3")),
    Scenario("lab08", "every worker crashes holding a /sleep?ms=800: replacements start only when the drains end",
             crash_every_worker, ("--workers", "3")),
    Scenario("lab09", "every worker crashes holding a /sleep?ms=800: each tells the master, whose replacement serves at once",
             crash_every_worker, ("--workers", "3")),
    Scenario("lab10", "a worker crashes again and again: after --limit 4 restarts within --during 10000 ms, giveup",
             crash_loop_to_giveup, ("--workers", "2", "--limit", "4", "--during", "10000")),
    # Round two: drawn once the lab exists (`make timeline LAB=lab14`).
    Scenario("lab14", "SIGHUP under load: every worker is replaced by one that listens before the old one retires",
             rolling_reload, ("--workers", "3")),
]}


@dataclass
class Recording:
    """What one scenario run left: the lab's log, the load's requests, the acts, and when."""
    lab: object
    events: list
    requests: list
    actions: list
    started: float
    ended: float


def record(sc, log_path, trace_path, root=labinfo.REPO):
    """Runs scenario `sc` (the lab must be built): the lab's log goes to log_path, the load's
    trace to trace_path. `make compare` measures with this too."""
    lab = labinfo.resolve(sc.lab, root)
    actions = []
    started = time.time()
    with labinfo.RunningLab(lab, sc.args) as running:
        run = Run(lab, running, trace_path, actions)
        try:
            run.wait_log(r"listening worker=", count=len(run.events(r"\] fork worker=")) or 1)
            run.start_load(sc.load_path, sc.connections)
            sc.act(run)
        finally:
            run.stop_load()
            ended = time.time()
            Path(log_path).write_text(running.log_text())
    events = parse_log(Path(log_path).read_text())
    requests = parse_trace(Path(trace_path).read_text()) if Path(trace_path).exists() else []
    return Recording(lab, events, requests, actions, started, ended)


def run_scenario(name, out, root=labinfo.REPO, build=True, span=None):
    """Runs one lab's scenario and draws it to `out`. Returns (svg path, log path, trace path)."""
    if name not in SCENARIOS:
        raise labinfo.LabError(f"no timeline scenario for {name} (scenarios: {', '.join(SCENARIOS)})")
    sc = SCENARIOS[name]
    lab = labinfo.resolve(sc.lab, root)
    if build:
        labinfo.build([lab.short, "loadgen"], root)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # What was drawn stays beside the build, not beside the SVG (which may go into notes/).
    inputs = Path(root) / "build" / "timeline"
    inputs.mkdir(parents=True, exist_ok=True)
    log_path, trace_path = inputs / f"{out.stem}.log", inputs / f"{out.stem}.trace"
    rec = record(sc, log_path, trace_path, root)
    (inputs / f"{out.stem}.actions").write_text("".join(f"{t:.6f} {what}\n" for t, what in rec.actions))
    end = rec.ended if span is None else rec.started + span
    title = f"{lab.short}: {lab.stage() or lab.title()}"
    out.write_text(draw(rec.events, rec.requests, rec.actions, title=title, subtitle=sc.what, start=rec.started,
                        end=end, source=f"{log_path.name}, {trace_path.name} (make timeline LAB={lab.short})"))
    return out, log_path, trace_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:8]))
    ap.add_argument("--lab", help="run this lab's scenario under load and draw it")
    ap.add_argument("--log", help="draw this event log")
    ap.add_argument("--trace", help="with --log: a ./loadgen --trace file")
    ap.add_argument("--actions", help="with --log: the scenario's acts, `SECONDS text` per line")
    ap.add_argument("--title", default="", help="with --log: the title")
    ap.add_argument("--from", dest="start", type=float, help="with --log: first instant drawn (wall-clock s)")
    ap.add_argument("--to", dest="end", type=float, help="with --log: last instant drawn (wall-clock s)")
    ap.add_argument("--span", type=float, help="with --lab: draw this many seconds from the start, "
                    "so two labs' timelines share a scale")
    ap.add_argument("--out", help="the SVG to write (default build/timeline/LAB.svg)")
    ap.add_argument("--root", default=str(labinfo.REPO), help=argparse.SUPPRESS)
    ap.add_argument("--no-build", action="store_true", help="do not run make first")
    args = ap.parse_args(argv)
    if bool(args.lab) == bool(args.log):
        ap.error("give --lab LAB (run its scenario) or --log LOG (draw a log)")
    try:
        if args.lab:
            name = labinfo.resolve(args.lab, args.root).short if args.lab not in SCENARIOS else args.lab
            out = Path(args.out or Path(args.root) / "build" / "timeline" / f"{name}.svg")
            t0 = time.monotonic()
            out, log_path, trace_path = run_scenario(name, out, args.root, not args.no_build, args.span)
            print(f"timeline: wrote {out} in {time.monotonic() - t0:.1f} s (log: {log_path}, trace: {trace_path})",
                  file=sys.stderr)
            return 0
        events = parse_log(Path(args.log).read_text(errors="replace"))
        requests = parse_trace(Path(args.trace).read_text()) if args.trace else []
        actions = parse_actions(Path(args.actions).read_text()) if args.actions else []
        out = Path(args.out or Path(args.log).with_suffix(".svg"))
        sources = ", ".join(Path(p).name for p in (args.log, args.trace) if p)
        out.write_text(draw(events, requests, actions, title=args.title or Path(args.log).stem,
                            start=args.start, end=args.end, source=sources))
        print(f"timeline: wrote {out}", file=sys.stderr)
        return 0
    except (labinfo.LabError, ScenarioError, ValueError, OSError) as e:
        print(f"timeline: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
