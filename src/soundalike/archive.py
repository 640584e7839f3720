"""Everything a station broadcasts, kept as FLAC files of a fixed length (an hour on air, a minute offline).

The file being filled is a WAV (`<name>.wav`), flushed after every block, so it is valid and playable at every
moment, as `render` writes its tracks; when it is full, or the station stops (Ctrl-C, SIGTERM), it is
encoded to `<name>.flac` atomically (render.to_flac) and the WAV removed. A FLAC file therefore only exists
whole. After a kill -9 the WAV is left, valid up to its last block: the next station on that folder encodes it
first. Only names this module writes are touched.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from .render import SUBTYPE, to_flac

NAME = re.compile(r"(\d{8}-\d{6}|part-\d{5})(-\d+)?")  # a stamped hour on air, or a numbered offline part


def stamped(index: int) -> str:
    """On air: the UTC time the file starts."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def numbered(index: int) -> str:
    """Offline: part-00000, part-00001, ..."""
    return f"part-{index:05d}"


class Archive:
    """Mono float blocks -> FLAC files of `file_seconds` each in `folder` (WAV while being written)."""

    def __init__(self, folder: Path, rate: int, file_seconds: float = 3600.0,
                 name: Callable[[int], str] = stamped):
        self.folder, self.rate, self.name = Path(folder), rate, name
        self.file_frames = max(1, round(file_seconds * rate))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="archive-flac")  # hours encode off the air
        self._pending: list[Future] = []
        self._file: sf.SoundFile | None = None
        self._path: Path | None = None
        self.index = 0
        self.written: list[Path] = []
        for wav in sorted(self.folder.glob("*.wav")):
            if NAME.fullmatch(wav.stem):
                self._recover(wav)

    @property
    def current(self) -> Path | None:
        """The WAV being written, if any."""
        return self._path

    def _recover(self, wav: Path) -> None:
        """A WAV left by a killed station: encode what it holds, as stopping would have."""
        flac = wav.with_suffix(".flac")
        if flac.exists():  # killed between the FLAC's rename and the WAV's removal
            wav.unlink()
            return
        try:
            self.written.append(to_flac(wav))
            print(f"archive: encoded {wav.name}, left by a station that was killed, as {flac.name}", file=sys.stderr)
        except (sf.LibsndfileError, RuntimeError) as e:
            print(f"archive: {wav} is unreadable ({e}); left as it is", file=sys.stderr)

    def write(self, audio: np.ndarray) -> None:
        """Append (n,) float32 audio, starting new files as they fill."""
        audio = np.asarray(audio, dtype=np.float32)
        while len(audio):
            if self._file is None:
                self._open()
            room = self.file_frames - self._file.frames
            self._file.write(audio[:room])
            self._file.flush()  # the header is rewritten: the WAV is valid up to here
            audio = audio[room:]
            if self._file.frames >= self.file_frames:
                self._finish()

    def _open(self) -> None:
        stem = self.name(self.index)
        path, k = self.folder / f"{stem}.wav", 1
        while path.exists() or path.with_suffix(".flac").exists():  # two starts in one second
            k += 1
            path = self.folder / f"{stem}-{k}.wav"
        self._file, self._path = sf.SoundFile(path, "w", self.rate, 1, SUBTYPE, format="WAV"), path
        self.index += 1

    def _finish(self) -> None:
        self._file.close()
        path, self._file, self._path = self._path, None, None
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._encoder.submit(self._encode, path))

    def _encode(self, wav: Path) -> None:
        self.written.append(to_flac(wav))

    def close(self) -> None:
        """Finish the file being written and wait until every file is FLAC."""
        if self._file is not None:
            self._finish()
        for f in self._pending:
            f.result()
        self._encoder.shutdown()
