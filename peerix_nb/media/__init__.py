"""Media for peerix_nb: MediaStream, camera-free sources, fan-out and numpy frame readers.

The aiortc media layer of peerix_nb (tracks, MediaPlayer, receivers' tracks), one idea a module:

- `streams`: `MediaStream`, the Python counterpart of a browser MediaStream (a list of aiortc
  tracks), and `MediaSourceError`;
- `stamps`: the frame stamp (`write_stamp`, `read_stamp`): a frame counter and the send time
  drawn into the image, to measure latency; and the audio stamp (`write_audio_stamp`,
  `read_audio_stamps`, `AudioStampReader`): the same in a 20 ms burst that survives Opus;
- `sources`: sources that need no camera: `synthetic()` (a moving pattern stamped with a frame
  counter and the send time, plus a tone with an audio stamp twice a second), `from_file()`
  and `from_frames()` (numpy arrays);
- `fanout`: `relayed()` (one track per RTCRtpSender) and `Tap` (drains a track continuously and
  fans out its latest frame, or every frame to a queued subscriber: audio), with which
  connections publish and receive;
- `readers`: `frames()` and `frame_callback()`, which turn any track into numpy arrays.

The browser's camera (`from_widget`, `camera_stream`) is a widget: `peerix_nb.widgets`.
"""

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .fanout import Tap, TapTrack, relayed, tap_for
from .readers import FrameCallback, FrameIterator, frame_callback, frames
from .sources import (
    FrameSourceTrack,
    SyntheticVideoTrack,
    ToneTrack,
    from_file,
    from_frames,
    synthetic,
)
from .stamps import (
    AudioStamp,
    AudioStampReader,
    Stamp,
    read_audio_stamps,
    read_stamp,
    write_audio_stamp,
    write_stamp,
)
from .streams import MediaSourceError, MediaStream

__all__ = [
    "AudioStamp",
    "AudioStampReader",
    "FrameCallback",
    "FrameIterator",
    "FrameSourceTrack",
    "MediaSourceError",
    "MediaStream",
    "MediaStreamError",
    "MediaStreamTrack",
    "Stamp",
    "SyntheticVideoTrack",
    "Tap",
    "TapTrack",
    "ToneTrack",
    "frame_callback",
    "frames",
    "from_file",
    "from_frames",
    "read_audio_stamps",
    "read_stamp",
    "relayed",
    "synthetic",
    "tap_for",
    "write_audio_stamp",
    "write_stamp",
]

# Outside __all__ but importable from here as before the split: the constants and type aliases
# (`from ..media import VIDEO_TIME_BASE`), and the private names tools reached for
# (bench/soak.py counted `_taps`). New code imports these from their module.
from .fanout import _shareable as _shareable
from .fanout import _taps as _taps
from .readers import VIDEO_FORMATS as VIDEO_FORMATS
from .sources import AUDIO_RATE as AUDIO_RATE
from .sources import AUDIO_SAMPLES as AUDIO_SAMPLES
from .sources import AUDIO_TIME_BASE as AUDIO_TIME_BASE
from .sources import SYNTHETIC_STAMP_EVERY as SYNTHETIC_STAMP_EVERY
from .sources import VIDEO_CLOCK_RATE as VIDEO_CLOCK_RATE
from .sources import VIDEO_TIME_BASE as VIDEO_TIME_BASE
from .sources import FrameFunction as FrameFunction
from .sources import FrameSource as FrameSource
from .stamps import AUDIO_STAMP_RATE as AUDIO_STAMP_RATE
from .stamps import AUDIO_STAMP_SAMPLES as AUDIO_STAMP_SAMPLES
from .stamps import STAMP_COLUMNS as STAMP_COLUMNS
from .stamps import STAMP_ROWS as STAMP_ROWS
from .stamps import _stamp_cell as _stamp_cell
