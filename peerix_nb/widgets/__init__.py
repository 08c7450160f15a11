"""Jupyter widgets for peerix_nb (anywidget + ipywidgets; `pip install 'peerix-nb[widgets]'`).

    from peerix_nb import Peer
    from peerix_nb.widgets import RoomWidget, VideoView, AudioView, ChatBox, EventsView
    peer = Peer()
    RoomWidget(peer, room="lobby", name="ada")

The widgets render state and call the public Peer API; they hold no protocol logic. They run
on the kernel's asyncio loop (ipykernel >= 7.4 handles widget messages while a cell awaits).
"""

from .audio import AudioView
from .camera import AudioChunks, CameraFrames, WidgetAudioTrack, camera_stream, from_widget
from .chat import ChatBox
from .events_view import EventsView
from .room import RoomWidget
from .stats_view import StatsView
from .video import VideoView

__all__ = [
    "AudioChunks",
    "AudioView",
    "CameraFrames",
    "ChatBox",
    "EventsView",
    "RoomWidget",
    "StatsView",
    "VideoView",
    "WidgetAudioTrack",
    "camera_stream",
    "from_widget",
]
