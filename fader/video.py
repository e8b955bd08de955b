"""Edit every frame of a video with a Fader model, the face's landmarks smoothed over time.

Two passes over the file. The first finds the largest face's 68 landmarks in each frame; they are
then averaged over neighbouring frames (Gaussian weights, within each run of frames that show a
face), because the detector's frame-to-frame noise would make the crop, and so the edit, jitter.
The second pass decodes the frames again, aligns each on its smoothed landmarks and edits and
pastes back as for a photo (`fader.align`). Frames without a face pass through unedited.

Video goes through PyAV (FFmpeg ships in its wheel): H.264 out at the source's frame rate and
size; the audio packets are copied as they are, so the sound is untouched.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from fader.align import AlignedFace, NoFaceFound, aligned_on, faces_in, largest_face
from fader.attributes import SliderValues, neutral_values, values_read, with_values
from fader.classifier import Classifier
from fader.crop_edit import decode_crops, detail_strength, encode_crops, model_input, paste_crops
from fader.model import FaderNetwork
from fader.photo import centre_square

SMOOTHING_SIGMA = 2.0  # frames: steadies the detector's jitter, follows a head turning in ~0.2 s
QUALITY = {"crf": "18", "preset": "veryfast"}  # visually lossless H.264, fast enough for 2 cores


def smooth_landmarks(
    track: list[np.ndarray | None], sigma: float = SMOOTHING_SIGMA
) -> list[np.ndarray | None]:
    """Each frame's landmarks averaged with its neighbours' (Gaussian weights, σ in frames),
    within each run of consecutive frames that have a face; frames without one stay None."""
    radius = max(1, round(3 * sigma))
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    smoothed = list(track)
    start = 0
    while start < len(track):
        if track[start] is None:
            start += 1
            continue
        end = start
        while end < len(track) and track[end] is not None:
            end += 1
        run = np.stack(track[start:end])
        for k in range(len(run)):
            lo, hi = max(0, k - radius), min(len(run), k + radius + 1)
            w = weights[lo - k + radius : hi - k + radius]
            smoothed[start + k] = np.tensordot(w, run[lo:hi], axes=1) / w.sum()
        start = end
    return smoothed


@dataclass(frozen=True)
class VideoResult:
    frames: int
    edited: int  # frames with a face (all frames for whole-image models)


class FrameEditor:
    """One model's edit applied frame by frame: decoder input fixed for the whole video.

    `values` are named as `fader.attributes.with_values` reads them (an attribute, or one value
    of a group), applied to the video's starting values."""

    def __init__(
        self,
        model: FaderNetwork,
        values: Mapping[str, float | str | dict],
        aligner: str = "auto",
        classifier: Classifier | None = None,
        detail: float | None = None,
    ):
        self.model, self.values = model.eval(), dict(values)
        self.aligner, self.classifier = aligner, classifier
        self.size = model.config.image_size
        self.detail = detail_strength(model.config, detail)

    def face(self, frame: Image.Image) -> AlignedFace | None:
        """The largest face, aligned, or None when the frame shows none."""
        try:
            return largest_face(faces_in(frame, self.size, self.aligner))
        except NoFaceFound:
            return None

    def read(self, crop: Image.Image) -> np.ndarray | None:
        """What the model's classifier reads from a crop (None without a classifier)."""
        if self.classifier is None:
            return None
        with torch.inference_mode():
            return self.classifier.read(model_input(self.model, [crop]))[0].numpy()

    def starting_values(self, readings: list[np.ndarray]) -> SliderValues:
        """The classifier's average reading over the video (else neutral): y₀ for every frame,
        so the edit does not flicker."""
        if self.classifier is None or not readings:
            return neutral_values(self.model.config)
        mean = np.mean(readings, axis=0).tolist()
        return values_read(self.model.config, self.classifier.config.attributes, mean)

    def edit(
        self, frame: Image.Image, landmarks: np.ndarray | None, start: SliderValues
    ) -> Image.Image:
        """The frame with its face (aligned on the smoothed `landmarks`) or its centre square
        edited from the starting values `start` to the values asked for."""
        faces = []
        if self.model.config.aligns_faces:
            if landmarks is None:
                return frame
            faces = [aligned_on(frame, landmarks, self.size, self.aligner)]
        crop = faces[0].crop if faces else centre_square(frame, self.size)
        encoded = encode_crops(self.model, [crop], start if self.detail else None)
        asked = with_values(self.model.config, start, self.values)
        ((edited,),) = decode_crops(self.model, encoded, [asked], [0], self.detail)
        return paste_crops(frame, [edited], faces, crop, self.detail)


def edit_video(
    source: Path,
    target: Path,
    editor: FrameEditor,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> VideoResult:
    """Write `source` with every frame edited to `target` (MP4); `progress(done, total)` is
    called per frame of each pass. `ValueError` for a file that is not a readable video."""
    aligns = editor.model.config.aligns_faces
    track: list[np.ndarray | None] = []  # the largest face's landmarks per frame
    readings: list[np.ndarray] = []
    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise ValueError(f"{source.name} has no video stream.")
            total = 2 * container.streams.video[0].frames  # 0 when the header does not say
            for frame in container.decode(video=0):
                image = frame.to_image()
                if aligns:
                    face = editor.face(image)
                    track.append(None if face is None else face.landmarks)
                    crop = None if face is None else face.crop
                else:
                    track.append(None)
                    crop = centre_square(image, editor.size)
                reading = None if crop is None else editor.read(crop)
                if reading is not None:
                    readings.append(reading)
                progress(len(track), total)
    except av.FFmpegError as error:
        raise ValueError(f"{source.name} is not a video we can read ({error}).") from None
    if not track:
        raise ValueError(f"{source.name} holds no frames.")
    smoothed = smooth_landmarks(track)
    start = editor.starting_values(readings)
    try:
        frames = _write_edited(source, target, editor, smoothed, start, progress, total)
    except av.FFmpegError as error:
        raise ValueError(f"{source.name} could not be re-encoded ({error}).") from None
    edited = sum(m is not None for m in smoothed) if aligns else len(smoothed)
    return VideoResult(frames=frames, edited=edited)


def _write_edited(
    source: Path,
    target: Path,
    editor: FrameEditor,
    smoothed: list[np.ndarray | None],
    start: SliderValues,
    progress: Callable[[int, int], None],
    total: int,
) -> int:
    """The second pass: decode again, edit each frame, encode H.264, copy the audio packets."""
    with av.open(str(source)) as container, av.open(str(target), "w", format="mp4") as output:
        video_in = container.streams.video[0]
        audio_in = container.streams.audio[0] if container.streams.audio else None
        rate = Fraction(video_in.average_rate or video_in.guessed_rate or 25)  # frames/s
        video_out = output.add_stream("libx264", rate=rate, options=QUALITY)
        width, height = video_in.codec_context.width, video_in.codec_context.height
        video_out.width, video_out.height = width, height
        video_out.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        audio_out = output.add_stream_from_template(audio_in) if audio_in else None
        index = 0
        for packet in container.demux([s for s in (video_in, audio_in) if s is not None]):
            if packet.stream is audio_in:
                if packet.dts is not None:  # the demuxer's final empty packet has none
                    packet.stream = audio_out
                    output.mux(packet)
                continue
            for frame in packet.decode():
                if index >= len(smoothed):
                    break
                edited = editor.edit(frame.to_image(), smoothed[index], start)
                out_frame = av.VideoFrame.from_image(edited)
                out_frame.pts, out_frame.time_base = index, 1 / rate
                output.mux(video_out.encode(out_frame))
                index += 1
                progress(len(smoothed) + index, total)
        output.mux(video_out.encode(None))
    return index
