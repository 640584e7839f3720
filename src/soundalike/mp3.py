"""MP3 for the radio: PCM blocks in, whole MP3 frames out, encoded by LAME through libsndfile.

libsndfile writes MP3 to any file-like object; `_Sink` collects what it writes in memory. The encoder's output
is cut at frame boundaries (`frames`), so every chunk the radio sends starts with a frame header and a
listener can join at any chunk: MP3 frames synchronise on their own. The tag frame LAME writes first (Xing /
Info, no audio; rewritten when the file closes, which a stream never does) is left out. Constant bit rate, so
the byte rate of real-time playback is fixed and a listener's bytes per second can be checked against it.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf

# Frame layout (ISO 11172-3 / 13818-3, Layer III): kbit/s by bitrate index, Hz by sample-rate index.
_KBPS = {1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1
         2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}  # MPEG-2 and 2.5
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits
RATES = tuple(sorted(r for rates in _RATES.values() for r in rates))  # sample rates MP3 can carry
DEFAULT_QUALITY = 0.6  # libsndfile's compression level: 64 kbit/s at 16-24 kHz, 32 at 8-12, 160 at 32-48


def frame_length(header: bytes) -> int | None:
    """Bytes of the Layer III frame whose 4-byte header this is, or None if it is not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer != 1 or index in (0, 15) or rate_index == 3:
        return None
    kbps = _KBPS[1 if version == 3 else 2][index]
    rate = _RATES[version][rate_index]
    per_frame = 144 if version == 3 else 72  # samples per frame / 8
    return per_frame * kbps * 1000 // rate + padding


def frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Split `data`, which starts at a frame header, into whole frames and the incomplete rest."""
    out, pos = [], 0
    while pos + 4 <= len(data):
        n = frame_length(data[pos:pos + 4])
        assert n is not None, f"expected an MP3 frame header at byte {pos}"
        if pos + n > len(data):
            break
        out.append(data[pos:pos + n])
        pos += n
    return out, data[pos:]


def bitrate(frame: bytes) -> int:
    """The bit rate of a frame, bit/s."""
    version, index = (frame[1] >> 3) & 3, frame[2] >> 4
    return _KBPS[1 if version == 3 else 2][index] * 1000


class _Sink:
    """A write-only file for libsndfile: appends in memory; rewrites of earlier bytes (the tag on close) are
    dropped."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0
        self.size = 0

    def write(self, b) -> int:
        b = bytes(b)
        if self.pos == self.size:
            self.data += b
            self.size += len(b)
        self.pos += len(b)
        return len(b)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        return b""

    def take(self) -> bytes:
        out, self.data = bytes(self.data), bytearray()
        return out


class Mp3Encoder:
    """Mono float audio in blocks -> MP3 frames (constant bit rate), streamed."""

    def __init__(self, rate: int, quality: float = DEFAULT_QUALITY):
        assert rate in RATES, f"MP3 carries {RATES} Hz, not {rate}"
        self.rate = rate
        self._sink = _Sink()
        self._file = sf.SoundFile(self._sink, "w", rate, 1, format="MP3", subtype="MPEG_LAYER_III",
                                  bitrate_mode="CONSTANT", compression_level=quality)
        self._rest = b""
        self._tag_skipped = False
        self.bitrate: int | None = None  # bit/s, known from the first audio frame

    def encode(self, audio: np.ndarray) -> bytes:
        """(n,) float32 in [-1, 1] -> the whole frames LAME has finished (it holds back about a frame)."""
        self._file.write(np.asarray(audio, dtype=np.float32))
        done, self._rest = frames(self._rest + self._sink.take())
        if done and not self._tag_skipped:
            if b"Xing" in done[0][:64] or b"Info" in done[0][:64]:
                done = done[1:]
            self._tag_skipped = True
        if done and self.bitrate is None:
            self.bitrate = bitrate(done[0])
        return b"".join(done)

    def close(self) -> None:
        self._file.close()
