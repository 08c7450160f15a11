"""Pictures of a connection: where the milliseconds went, who said what to whom, stats over time.

matplotlib is imported only when a function runs (it is not a dependency of the engine). Every
function takes an optional `ax` to draw into and returns the Figure it drew on (in Jupyter, a
returned figure renders inline, once):

- `timeline(log)`: a Gantt chart of `timing()`, one row per remote connection attempt;
- `sequence(*logs)`: a signaling sequence diagram between peers, from their merged logs;
- `stats(sampler, metric)`: one line per remote (and kind) of a `StatsSampler` metric;
- `stack(log)`: the protocol stack of one connection, Peerix's own layers beside the standard
  ones, each annotated with the median time its phase took in `log`.

Layers (each module imports only those before it): logrows <- timing, logfiles <- plot <- log,
stats. `EventLog.plot_timeline` and `StatsSampler.plot` call this module, so it knows an EventLog
or a Peer only through `timing()` and `merge()`, and a StatsSampler only by its `to_frame()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from .logfiles import PathLike, merge
from .logrows import values
from .timing import timing

if TYPE_CHECKING:
    import matplotlib.axes
    import matplotlib.figure
    import pandas as pd

    from .log import EventLog
    from .peer import Peer
    from .stats import StatsSampler

    Axes = matplotlib.axes.Axes
    Figure = matplotlib.figure.Figure

#: Phases drawn as bars by `timeline` (the others are sums of these or markers).
BAR_PHASES = ("discovery", "gathering", "signaling", "ice", "dtls", "sctp")
PHASE_COLORS = {
    "discovery": "#9e9e9e",
    "gathering": "#4e79a7",
    "signaling": "#f28e2b",
    "ice": "#59a14f",
    "dtls": "#e15759",
    "sctp": "#b07aa1",
}
KIND_COLORS = {
    "join": "#4e79a7",
    "offer": "#f28e2b",
    "answer": "#59a14f",
    "candidate": "#9e9e9e",
    "leave": "#e15759",
    "channel": "#b07aa1",
}
#: Units of the StatsSampler columns, for axis labels.
UNITS = {
    "bitrate": "bit/s",
    "bitrate_sent": "bit/s",
    "bitrate_received": "bit/s",
    "rtt": "ms",
    "jitter": "ms",
}
#: Columns that tell a StatsSampler's frame from other frames (an EventLog's has no bytes_sent).
_SAMPLER_COLUMNS = frozenset({"t", "peer", "remote", "kind", "bytes_sent"})
#: How much later than its signal:recv a signal:send may be stamped and still match it (s):
#: a driver may deliver before the sender's row is written, and clocks of machines differ.
MATCH_SLACK = 0.25


def _axes(ax: Axes | None, width: float, height: float) -> Axes:
    """`ax`, or the axes of a new figure that the caller gets back.

    The figure is made by pyplot (in IPython that also sets up inline display of figures) and
    then dropped from pyplot's list, so that Jupyter shows it once, as the returned value,
    and not a second time when the cell ends.
    """
    from matplotlib.axes import Axes

    if ax is not None:
        if not isinstance(ax, Axes):
            raise TypeError(f"ax must be matplotlib Axes (e.g. from plt.subplots()), got {ax!r}")
        return ax
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(figure)
    return figure.add_subplot()


def _figure(ax: Axes) -> Figure:
    """The figure `ax` is on (a SubFigure, which Jupyter shows alike, if `ax` is in one)."""
    return cast("Figure", ax.figure)


def _short(peer_id: Any) -> str:
    """Peer ids are often UUIDs: their first 8 characters tell them apart on a chart."""
    text = str(peer_id)
    return text if len(text) <= 12 else text[:8] + "…"


def _floats(column: pd.Series) -> list[float | None]:
    return [None if value is None else float(value) for value in values(column)]


# -- timeline ---------------------------------------------------------------------------------


def timeline(source: EventLog | Peer | pd.DataFrame, ax: Axes | None = None) -> Figure:
    """A Gantt chart of connection attempts: one row per (peer, remote, attempt), one bar per
    phase (discovery, gathering, signaling, ice, dtls, sctp) on its own lane, and markers where
    the attempt connected, its first channel opened and its first frame arrived.

    `source`: an EventLog, a Peer, an event DataFrame (`to_frame()`, `merge()`), or a
    `timing(starts=True)` frame. The x axis is ms since each attempt's origin (the JOIN that
    started it), so attempts line up and their phases compare at a glance.
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame) and "discovery_start" in source.columns:
        frame = source
    elif isinstance(source, pd.DataFrame) and "discovery" in source.columns:
        raise ValueError("timeline() needs timing(starts=True) (when each phase began)")
    else:
        frame = timing(source, starts=True)
    ax = _axes(ax, 10.0, 1.2 + 0.55 * max(len(frame), 1))
    if frame.empty:
        ax.text(0.5, 0.5, "no connection attempts", ha="center", va="center")
        ax.set_axis_off()
        return _figure(ax)
    lane = 0.8 / len(BAR_PHASES)
    several_peers = frame["peer"].nunique() > 1
    for j, phase in enumerate(BAR_PHASES):
        ys, lefts, widths = [], [], []
        for i, (start, width) in enumerate(
            zip(_floats(frame[f"{phase}_start"]), _floats(frame[phase]), strict=True)
        ):
            if start is not None and width is not None:
                ys.append(i - 0.4 + lane * (j + 0.5))
                lefts.append(start)
                widths.append(width)
        if ys:
            ax.barh(
                ys, widths, left=lefts, height=lane * 0.9, color=PHASE_COLORS[phase], label=phase
            )
    for phase, marker, size, label in (
        ("total", "|", 14, "connected"),
        ("first_channel", "o", 7, "first channel open"),
        ("first_frame", "*", 11, "first frame"),
    ):
        points = [
            (start + width, i)
            for i, (start, width) in enumerate(
                zip(_floats(frame[f"{phase}_start"]), _floats(frame[phase]), strict=True)
            )
            if start is not None and width is not None
        ]
        if points:
            ends, lanes = zip(*points, strict=True)
            ax.plot(
                ends,
                lanes,
                linestyle="none",
                marker=marker,
                markersize=size,
                color="black",
                label=label,
            )
    labels = []
    row: Any  # a namedtuple of the timing columns
    for row in frame.itertuples(index=False):
        label = f"{_short(row.remote)} #{row.attempt}"
        if several_peers:
            label = f"{_short(row.peer)} → {label}"
        if row.outcome != "connected" and pd.isna(row.total):
            label += f" ({row.outcome})"
        labels.append(label)
    ax.set_yticks(range(len(frame)), labels)
    ax.set_ylim(len(frame) - 0.5, -0.5)  # first attempt on top
    ax.set_xlabel("ms since the JOIN that started the attempt")
    ax.set_title("Where the time goes")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return _figure(ax)


# -- sequence ---------------------------------------------------------------------------------


def sequence(
    *sources: EventLog | Peer | pd.DataFrame | PathLike | list[Any],
    ax: Axes | None = None,
    kinds: Iterable[str] | None = None,
    by: str = "time",
) -> Figure:
    """A signaling sequence diagram: one lifeline per peer, an arrow per message received.

    `sources` are EventLogs, Peers, event frames or saved log files of the peers to show (see
    `merge`). Each `signal:recv` is matched with the `signal:send` of the same sender, kind,
    path and size (the same bytes travel), the latest one sent before it. Solid arrows went
    through the driver, dashed ones over the control channel; a message sent to one peer and
    never received is drawn as a red stub ending in "x". `kinds` keeps only those kinds
    (e.g. `("join", "offer", "answer")`). Time runs down, in ms of wall clock; with
    `by="order"` messages are evenly spaced in the order they were sent instead (readable when
    a timeout leaves a long gap).
    """
    if by not in ("time", "order"):
        raise ValueError(f"by must be 'time' or 'order', got {by!r}")
    frame = merge(*sources)
    peers = [str(p) for p in dict.fromkeys(frame["peer"].astype("object"))]
    position = {peer: i for i, peer in enumerate(peers)}
    rows = frame[frame["event"].isin(["signal:send", "signal:recv"])]
    if kinds is not None:
        rows = rows[rows["kind"].isin(list(kinds))]
    ax = _axes(ax, 1.5 + 2.2 * max(len(peers), 2), 6.0)
    if rows.empty:
        ax.text(0.5, 0.5, "no signaling messages", ha="center", va="center")
        ax.set_axis_off()
        return _figure(ax)
    origin = rows["time"].min()
    ms = ((rows["time"] - origin).dt.total_seconds() * 1000).tolist()
    records = zip(
        values(rows["event"]),
        values(rows["peer"]),
        values(rows["remote"]),
        values(rows["detail"]),
        values(rows["kind"]),
        values(rows["via"]),
        values(rows["bytes"]),
        ms,
        strict=True,
    )
    # A send waits in one queue per possible receiver: the remote it names, or (a broadcast
    # JOIN/LEAVE, remote "") every other peer shown.
    queues: dict[tuple[Any, ...], list[tuple[float, int]]] = {}
    sends: list[tuple[str, str, str, str, float]] = []
    receives = []
    for event, peer, remote, detail, kind, via, size, at in records:
        if event == "signal:send":
            index = len(sends)
            sends.append((peer, remote or "", kind, via, at))
            targets = [remote] if remote else [p for p in peers if p != peer]
            for target in targets:
                queues.setdefault((peer, target, kind, via, size), []).append((at, index))
        else:
            receives.append((remote or detail, peer, kind, via, size, at))
    arrows = []  # (sender, receiver, kind, via, sent ms, received ms)
    received: set[int] = set()
    for sender, receiver, kind, via, size, at in receives:
        queue = queues.get((sender, receiver, kind, via, size), [])
        # Sent before it was received; only if there is none, up to MATCH_SLACK later (else a
        # like message sent soon after, such as an offer made again after a glare, steals it).
        earlier = [entry for entry in queue if entry[0] <= at]
        earlier = earlier or [entry for entry in queue if entry[0] <= at + MATCH_SLACK * 1000]
        if not earlier or sender not in position:
            continue
        sent_at, index = earlier[-1]
        queue.remove((sent_at, index))
        received.add(index)
        arrows.append((sender, receiver, kind, via, sent_at, at))
    lost = [
        send
        for index, send in enumerate(sends)
        if index not in received and send[1] in position and send[1] != send[0]
    ]
    if by == "order":
        # One step per message, in send order; a message's receive is drawn most of a step
        # later, so concurrent messages stay apart.
        sent = sorted({a[4] for a in arrows} | {s[4] for s in lost})
        step = {at: float(i) for i, at in enumerate(sent)}
        arrows = [(*a[:4], step[a[4]], step[a[4]] + 0.7) for a in arrows]
        lost = [(*s[:4], step[s[4]]) for s in lost]
    _draw_sequence(
        ax,
        peers,
        position,
        arrows,
        lost,
        "message, in send order" if by == "order" else "ms (wall clock)",
    )
    return _figure(ax)


def _draw_sequence(
    ax: Axes,
    peers: list[str],
    position: dict[str, int],
    arrows: list[tuple[Any, ...]],
    lost: list[tuple[Any, ...]],
    ylabel: str,
) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    ends = [a[5] for a in arrows] + [s[4] for s in lost]
    bottom = max(ends, default=1.0) * 1.05 + 1.0
    for x in range(len(peers)):
        ax.plot([x, x], [0, bottom], color="0.7", linewidth=1, zorder=0)
    for sender, receiver, kind, via, sent_at, at in arrows:
        x0, x1 = position[sender], position[receiver]
        color = KIND_COLORS.get(kind, "black")
        arrow = FancyArrowPatch(
            (x0, sent_at),
            (x1, at),
            arrowstyle="-|>",
            mutation_scale=12,
            color=color,
            linestyle="--" if via == "control" else "-",
            linewidth=1.2,
            shrinkA=0,
            shrinkB=0,
        )
        arrow.set_gid("signal")
        ax.add_patch(arrow)
        ax.text(
            (x0 + x1) / 2,
            (sent_at + at) / 2,
            str(kind).upper(),
            color=color,
            fontsize=7,
            ha="center",
            va="bottom",
            gid="signal-label",
        )
    for sender, receiver, kind, _via, sent_at in lost:
        x0, x1 = position[sender], position[receiver]
        middle = x0 + (x1 - x0) / 2
        stub = FancyArrowPatch((x0, sent_at), (middle, sent_at), arrowstyle="-", color="red")
        stub.set_gid("lost")
        ax.add_patch(stub)
        ax.plot([middle], [sent_at], marker="x", color="red", markersize=8)
        ax.text(
            middle,
            sent_at,
            f"{str(kind).upper()} lost",
            color="red",
            fontsize=7,
            ha="center",
            va="bottom",
            gid="signal-label",
        )
    ax.set_xticks(range(len(peers)), [_short(p) for p in peers])
    ax.xaxis.tick_top()
    ax.set_xlim(-0.5, len(peers) - 0.5)
    ax.set_ylim(bottom, -1.0)  # time runs down
    ax.set_ylabel(ylabel)
    ax.set_title("Signaling", pad=24)
    ax.legend(
        handles=[
            Line2D([], [], color="black", linestyle="-", label="driver"),
            Line2D([], [], color="black", linestyle="--", label="control channel"),
            Line2D([], [], color="red", marker="x", linestyle="none", label="lost"),
        ],
        loc="lower right",
        fontsize="small",
    )


# -- stats ------------------------------------------------------------------------------------


def stats(
    source: StatsSampler | pd.DataFrame,
    metric: str = "bitrate",
    ax: Axes | None = None,
    kind: str | None = None,
) -> Figure:
    """`metric` (a StatsSampler column: bitrate, rtt, jitter, bytes_sent, frames_decoded, ...)
    over `t`, one line per remote and kind (`transport`, `audio`, `video`; or only `kind`).

    `source`: a StatsSampler or its `to_frame()` (frames of several samplers can be
    concatenated: lines are then per peer too). Series with no value at all are left out.
    """
    import pandas as pd

    frame: pd.DataFrame | None
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        to_frame = getattr(source, "to_frame", None)  # a StatsSampler (plot cannot import it)
        frame = to_frame() if callable(to_frame) else None
        if not isinstance(frame, pd.DataFrame) or not set(frame.columns) >= _SAMPLER_COLUMNS:
            raise TypeError(
                f"plot.stats() needs a StatsSampler (peer.stats()) or its to_frame(), got {source!r}"
            )
    if metric not in frame.columns or metric in ("time", "t", "peer", "remote", "kind", "state"):
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])][1:]
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(numeric)}")
    if kind is not None:
        frame = frame[frame["kind"] == kind]
    ax = _axes(ax, 8.0, 4.0)
    several_peers = frame["peer"].nunique() > 1
    for (peer, remote, what), group in frame.groupby(
        ["peer", "remote", "kind"], observed=True, sort=True
    ):
        values = group[metric]
        if values.isna().all():
            continue
        label = f"{_short(remote)} {what}"
        if several_peers:
            label = f"{_short(peer)} → {label}"
        ys = values.astype("Float64").to_numpy(dtype=float, na_value=float("nan"))
        ax.plot(group["t"].to_numpy(dtype=float), ys, marker=".", label=label)
    unit = UNITS.get(metric)
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_xlabel("t (s since the peer was created)")
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="best", fontsize="small")
    return _figure(ax)


# -- stack ------------------------------------------------------------------------------------

#: Fill colours of `stack`: the WebRTC standards, and Peerix's own layers beside them.
STANDARD_COLOR = "#d6e4f0"
PEERIX_COLOR = "#fbe0c3"
#: The boxes of `stack`: key, (x, y, width, height) on a 12 x 8 canvas, text, Peerix's own.
_STACK_BOXES: tuple[tuple[str, tuple[float, float, float, float], str, bool], ...] = (
    # Signaling, which WebRTC leaves to the application.
    (
        "sdp",
        (0.2, 5.9, 3.4, 1.1),
        "SDP offer / answer (standard text)\nICE ufrag/pwd, candidates,\n"
        "DTLS fingerprint, m-lines, codecs",
        False,
    ),
    (
        "messages",
        (0.2, 4.5, 3.4, 1.1),
        "Peerix messages\nJOIN · OFFER · ANSWER\nCANDIDATE · LEAVE",
        True,
    ),
    ("driver", (0.2, 3.1, 3.4, 1.1), "driver\nMemoryDriver · NATS · BroadcastChannel", True),
    # One RTCPeerConnection.
    ("channels", (5.0, 6.2, 1.5, 0.95), "data channels\n('chat', ...)", False),
    ("control", (6.6, 6.2, 1.5, 0.95), "control channel\n(id 0: offers,\nanswers, pings)", True),
    ("tracks", (9.0, 6.2, 2.8, 0.95), "media tracks\nVP8 · H264 · Opus", False),
    ("sctp", (5.0, 5.05, 3.1, 0.95), "SCTP\n(streams: reliable or not)", False),
    (
        "dtls",
        (5.0, 3.9, 3.1, 0.95),
        "DTLS\n(certificate checked against\nthe SDP fingerprint)",
        False,
    ),
    (
        "srtp",
        (9.0, 3.9, 2.8, 2.1),
        "SRTP / SRTCP\nencrypted RTP media\nand RTCP feedback\n(not inside DTLS)",
        False,
    ),
    (
        "ice",
        (5.0, 2.75, 6.8, 0.95),
        "ICE\nSTUN connectivity checks on candidate pairs, then consent checks",
        False,
    ),
    (
        "udp",
        (5.0, 1.6, 6.8, 0.95),
        "UDP: one 5-tuple (BUNDLE) carries STUN, DTLS and SRTP alike",
        False,
    ),
)
#: Dashed arrows of `stack`: from, to, label, where the label goes.
_STACK_ARROWS: tuple[
    tuple[tuple[float, float], tuple[float, float], str, tuple[float, float]], ...
] = (
    ((8.1, 4.35), (9.0, 4.35), "keys\n(DTLS-SRTP)", (8.55, 4.7)),
    ((3.6, 6.2), (5.0, 3.25), "ufrag, pwd,\ncandidates", (4.45, 4.0)),
    ((3.6, 6.6), (5.0, 4.4), "fingerprint", (4.15, 5.75)),
)
#: Per box that shows a measurement: (phase of `timing()`, how it reads).
_STACK_PHASES = {
    "messages": (("discovery", "JOIN → remote known"), ("signaling", "offer → answer")),
    "ice": (("gathering", "gathering"), ("ice", "checks")),
    "dtls": (("dtls", "handshake"),),
    "sctp": (("sctp", "up to the control channel"),),
}


def stack(source: EventLog | Peer | pd.DataFrame | None = None, ax: Axes | None = None) -> Figure:
    """The layers of one Peerix connection: signaling beside the standard WebRTC stack.

    Left, signaling, which WebRTC leaves to the application: SDP offers and answers (standard
    text) inside Peerix's own messages (JOIN, OFFER, ANSWER, CANDIDATE, LEAVE) over a driver.
    Right, one RTCPeerConnection: data channels (and Peerix's control channel) on SCTP inside
    DTLS; media as SRTP/SRTCP, whose keys DTLS exports (DTLS-SRTP) but which does not run inside
    DTLS; all of it on ICE over one bundled UDP flow. Standard layers are blue, Peerix's orange.

    With `source` (an EventLog, a Peer, an event frame or a `timing()` frame) the layers show
    the median of their phases over the connection attempts in it, in ms.
    """
    import pandas as pd
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    measured: dict[str, str] = {}
    attempts = 0
    if source is not None:
        if isinstance(source, pd.DataFrame) and "ice" in source.columns:
            frame = source  # already a timing() frame
        else:
            frame = timing(source)
        attempts = len(frame)
        for key, phases in _STACK_PHASES.items():
            medians = [(words, frame[phase].astype("Float64").median()) for phase, words in phases]
            parts = [f"{words} {float(m):.0f} ms" for words, m in medians if not pd.isna(m)]
            if parts:
                measured[key] = "; ".join(parts)

    ax = _axes(ax, 11.0, 6.0)
    for key, (x, y, width, height), text, peerix in _STACK_BOXES:
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                width,
                height,
                boxstyle="round,pad=0.02,rounding_size=0.12",
                facecolor=PEERIX_COLOR if peerix else STANDARD_COLOR,
                edgecolor="0.35",
                linewidth=1.0,
                gid=f"layer-{key}",
            )
        )
        if key in measured:
            text += "\n" + measured[key]
        ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=8)
    for start, end, text, (label_x, label_y) in _STACK_ARROWS:
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=10,
                color="0.3",
                linestyle="--",
                linewidth=1.0,
                gid="stack-arrow",
            )
        )
        ax.text(
            label_x,
            label_y,
            text,
            fontsize=7,
            ha="center",
            va="center",
            color="0.2",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )
    for x, text in (
        (1.9, "signaling\n(before the connection exists)"),
        (8.4, "one RTCPeerConnection\n(every layer on one bundled UDP flow)"),
    ):
        ax.text(x, 7.5, text, ha="center", va="center", fontsize=9, weight="bold")
    ax.text(
        1.9,
        2.9,
        "once the control channel is open,\nlater offers and answers ride it",
        ha="center",
        va="top",
        fontsize=7.5,
        style="italic",
    )
    ax.legend(
        handles=[
            Patch(facecolor=STANDARD_COLOR, edgecolor="0.35", label="WebRTC standard"),
            Patch(facecolor=PEERIX_COLOR, edgecolor="0.35", label="Peerix's own"),
        ],
        loc="lower left",
        fontsize="small",
        frameon=False,
    )
    title = "One connection, layer by layer"
    if measured:
        title += f" (median of {attempts} attempt{'s' if attempts != 1 else ''})"
    ax.set_title(title)
    ax.set_xlim(0, 12)
    ax.set_ylim(0.9, 8.1)
    ax.set_axis_off()
    return _figure(ax)


__all__ = ["sequence", "stack", "stats", "timeline"]
