"""The fast image pipeline of feature extraction: decode with libjpeg-turbo/libpng (torchvision.io) or nvJPEG,
resize and crop as tensor ops, normalise whole batches, all off the main thread.

It reproduces a backbone's open_clip eval transform (Resize, CenterCrop, RGB, ToTensor, Normalize), read
from the transform object itself, within a stated tolerance of `transform(dataset.get_image(i))` (the PIL
path). Decoding is bit-identical (both use libjpeg-turbo with the same IDCT and upsampling; PNG through
libpng). The resize is not: Pillow resamples in two passes, rounding to uint8 in between, and torchvision's
antialiased uint8 resize rounds a few values differently. Accepted: at most 2 grey levels per value (2/255
before Normalize, 2/(255 std) = 0.030 after it for CLIP's std) against Pillow's two passes, horizontal first,
as Pillow did them through version 12 (Pillow 11.3 checked); on ImageNet-like photos (500x375, 375x500, ...,
shrunk to 224) at most 1 level on under 1% of values. Pillow 13 runs the vertical pass first for some shapes,
which moves its own output by up to 15 levels on up to 30% of values for those shapes (Pillow 11.3 against
13.0 on the same images); there this pipeline differs from Pillow 13 by as much, and from Pillow 12 by <= 2.
Without a resize (the demo's 28x28 images) the output is bit-identical. tests/test_imagepipe.py checks this.

Files the fast decoders might read differently from PIL go through PIL, and then through the transform's
own PIL steps, so they equal the PIL path exactly: formats other than JPEG and 8-bit grey/RGB PNG, CMYK and
YCCK JPEGs, palette, alpha and 16-bit PNGs, and any file the fast decoder rejects (a corrupted file then gets
the PIL path's error naming it). On a CUDA device JPEGs are decoded in batches by nvJPEG, whose IDCT and
chroma upsampling differ slightly from libjpeg-turbo's; that path carries its own cache tag.
"""

from __future__ import annotations

import threading
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.config import IMAGE_PIPELINE_ENV, IMAGE_PIPELINES, resolve_image_pipeline

PIPELINES = IMAGE_PIPELINES  # the names and their default live in benchmark.config
PIPELINE_ENV = IMAGE_PIPELINE_ENV  # "pil" selects the PIL path of benchmark.features
VERSION = 1  # bump when the pipeline's output changes: it is part of the feature cache key

_PNG = b"\x89PNG\r\n\x1a\n"
_NVJPEG = threading.Lock()  # one nvJPEG call at a time: calling it from several threads at once is not documented
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # start-of-frame markers


# torchvision 0.29 deprecates its image codecs in favour of TorchCodec and warns on every call; they are still
# the libjpeg-turbo/nvJPEG decoders this pipeline is built on (and if they go, every image takes the PIL path).
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
)


def resolve_pipeline(name: str | None = None) -> str:
    """The image pipeline extraction uses: `name`, else $OODBENCH_IMAGE_PIPELINE, else "tensor"
    (benchmark.config.resolve_image_pipeline)."""
    return resolve_image_pipeline(name)


def jpeg_components(blob: bytes) -> int | None:
    """The number of colour components of a baseline/progressive JPEG (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK),
    read from its start-of-frame header; None when the bytes are not a well-formed JPEG header."""
    if blob[:2] != b"\xff\xd8":
        return None
    pos, n = 2, len(blob)
    while pos + 4 <= n:
        if blob[pos] != 0xFF:
            return None
        marker = blob[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(blob[pos + 2 : pos + 4], "big")
        if marker in _SOF:
            return blob[pos + 9] if pos + 9 < n else None
        if marker == 0xDA or length < 2:  # scan data before any frame header: malformed
            return None
        pos += 2 + length
    return None


def fast_format(blob: bytes) -> str | None:
    """ "jpeg" or "png" when torchvision's decoders read these bytes exactly as PIL's `.convert("RGB")` does,
    else None (PIL decodes them)."""
    if blob[:2] == b"\xff\xd8":
        return "jpeg" if jpeg_components(blob) in (1, 3) else None
    if blob[:8] == _PNG and len(blob) > 26 and blob[12:16] == b"IHDR":
        bit_depth, colour_type = blob[24], blob[25]
        return "png" if bit_depth == 8 and colour_type in (0, 2) else None  # grey or RGB, 8 bits
    return None


def decode_rgb(blob: bytes) -> torch.Tensor | None:
    """uint8 [3, H, W] from JPEG or PNG bytes via libjpeg-turbo/libpng, or None where PIL must decode."""
    from torchvision.io import ImageReadMode, decode_jpeg, decode_png

    kind = fast_format(blob)
    if kind is None:
        return None
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    try:
        image = (decode_jpeg if kind == "jpeg" else decode_png)(data, mode=ImageReadMode.RGB)
    except RuntimeError:  # corrupted or unsupported: the PIL path decodes it or names the file
        return None
    return image if image.dtype == torch.uint8 and image.shape[0] == 3 else None


@dataclass(frozen=True)
class TensorTransform:
    """An open_clip eval transform as tensor ops: geometry per uint8 image, then normalisation per batch."""

    resize: Any  # the transform's Resize step (size, interpolation, max_size), or None
    crop: tuple[int, int] | None  # CenterCrop size (h, w)
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    pil_geometry: Any  # the transform's own geometric steps, for images that PIL decodes

    @classmethod
    def from_transform(cls, transform: Any) -> TensorTransform | None:
        """Read size, interpolation, crop and mean/std off a torchvision Compose; None when a step is not one this
        pipeline reproduces (then extraction keeps the PIL path)."""
        from torchvision import transforms as T

        steps = getattr(transform, "transforms", None)
        if steps is None:
            return None
        resize = crop = mean = std = None
        geometry, seen_tensor = [], False
        for step in steps:
            name = type(step).__name__
            if isinstance(step, T.Resize) and not seen_tensor and resize is None and crop is None:
                if step.interpolation not in (T.InterpolationMode.BICUBIC, T.InterpolationMode.BILINEAR):
                    return None
                resize = step
                geometry.append(step)
            elif isinstance(step, T.CenterCrop) and not seen_tensor and crop is None:
                crop = tuple(int(s) for s in step.size)
                geometry.append(step)
            elif name == "MaybeConvertMode" and getattr(step, "mode", None) == "RGB" and not seen_tensor:
                continue  # images are decoded to RGB
            elif getattr(step, "__name__", "") == "_convert_to_rgb" and not seen_tensor:
                continue
            elif isinstance(step, T.ToTensor) and not seen_tensor:
                seen_tensor = True
            elif isinstance(step, T.Normalize) and seen_tensor and mean is None:
                mean, std = tuple(float(m) for m in step.mean), tuple(float(s) for s in step.std)
            else:
                return None
        if not seen_tensor:
            return None
        return cls(resize=resize, crop=crop, mean=mean, std=std, pil_geometry=T.Compose(geometry))

    def describe(self, *, decoder: str) -> str:
        """What the feature cache key adds to the transform's own description for this pipeline."""
        return f"tensor pipeline v{VERSION} ({decoder} decode, torchvision antialiased resize)"

    def geometry(self, image: torch.Tensor) -> torch.Tensor:
        """Resize and centre-crop one uint8 [3, H, W] image (on its device), as the PIL transform does."""
        from torchvision.transforms.v2 import functional as F

        if self.resize is not None:
            size = self.resize.size
            image = F.resize(
                image,
                list(size) if isinstance(size, (list, tuple)) else [size],
                interpolation=self.resize.interpolation,
                max_size=self.resize.max_size,
                antialias=True,  # PIL always antialiases
            )
        if self.crop is not None:
            image = F.center_crop(image, list(self.crop))
        return image.contiguous()

    def pil_image(self, image) -> torch.Tensor:
        """uint8 [3, h, w] of an RGB PIL image after the transform's own PIL geometry (exactly the PIL path)."""
        array = np.asarray(self.pil_geometry(image), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 [B, 3, h, w] from uint8 [B, 3, h, w]: ToTensor's /255 then Normalize, the same float ops."""
        out = batch.to(torch.float32).div(255)
        if self.mean is not None:
            mean = torch.as_tensor(self.mean, dtype=out.dtype, device=out.device).view(1, -1, 1, 1)
            std = torch.as_tensor(self.std, dtype=out.dtype, device=out.device).view(1, -1, 1, 1)
            out = out.sub_(mean).div_(std)
        return out


def _nvjpeg_available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


class ImageBatches:
    """Preprocessed batches [B, 3, h, w] (float32 on `device`) of `dataset` for the index lists `batches`, in order.

    `threads` background threads each decode and resize whole batches (torchvision's decoders and resize release
    the GIL), at most `prefetch` batches ahead, and normalise them too, except when a CUDA device is fed from
    CPU decoding: then the main thread copies the uint8 batch and normalises it on the device. On CUDA, JPEGs
    are decoded in batches by nvJPEG (`gpu_decode`). Use as a context manager, so that an error in the consumer
    (out of memory) stops the threads."""

    def __init__(
        self,
        dataset,
        transform: TensorTransform,
        batches: list[list[int]],
        *,
        device: torch.device,
        threads: int = 1,
        prefetch: int | None = None,
        gpu_decode: bool | None = None,
    ) -> None:
        self.dataset, self.transform, self.batches = dataset, transform, batches
        self.device = torch.device(device)
        self.threads = max(1, threads)
        self.prefetch = prefetch or self.threads + 1
        self.gpu_decode = _nvjpeg_available(self.device) if gpu_decode is None else gpu_decode
        self._pool: ThreadPoolExecutor | None = None

    @staticmethod
    def decoder(device: torch.device, gpu_decode: bool | None = None) -> str:
        use_gpu = _nvjpeg_available(torch.device(device)) if gpu_decode is None else gpu_decode
        return "nvjpeg" if use_gpu else "libjpeg-turbo"

    def __len__(self) -> int:
        return len(self.batches)

    def _pil(self, i: int) -> torch.Tensor:
        return self.transform.pil_image(self.dataset.get_image(i))

    def _cpu_image(self, i: int) -> torch.Tensor:
        image = decode_rgb(self.dataset.get_bytes(i))
        return self._pil(i) if image is None else self.transform.geometry(image)

    def _gpu_images(self, indices: list[int]) -> list[torch.Tensor]:
        """nvJPEG for the batch's JPEGs (one call), the CPU path for the rest; uint8 images on the device."""
        from torchvision.io import ImageReadMode, decode_jpeg

        blobs = [self.dataset.get_bytes(i) for i in indices]
        jpeg = [k for k, blob in enumerate(blobs) if fast_format(blob) == "jpeg"]
        out: list[torch.Tensor | None] = [None] * len(indices)
        if jpeg:
            data = [torch.frombuffer(bytearray(blobs[k]), dtype=torch.uint8) for k in jpeg]
            try:
                with _NVJPEG:
                    decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:  # one bad file fails the whole call: decode those images on the CPU path
                decoded = [None] * len(jpeg)
            for k, image in zip(jpeg, decoded, strict=True):
                out[k] = None if image is None else self.transform.geometry(image)
        return [
            image if image is not None else self._cpu_image(i).to(self.device)
            for i, image in zip(indices, out, strict=True)
        ]

    def _load(self, indices: list[int]) -> torch.Tensor:
        """One batch: normalised where it is decoded (on the device with nvJPEG, or on a CPU device), else
        uint8 in pinned memory, for the main thread to copy to the GPU (4x fewer bytes) and normalise there."""
        if self.gpu_decode:
            return self.transform.normalize(torch.stack(self._gpu_images(indices)))
        batch = torch.stack([self._cpu_image(i) for i in indices])
        return self.transform.normalize(batch) if self.device.type == "cpu" else batch.pin_memory()

    def __enter__(self) -> ImageBatches:
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="oodbench-images")
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._pool is None:
            raise RuntimeError("use ImageBatches as a context manager: `with ImageBatches(...) as batches:`")
        pending: deque[Future] = deque()
        upcoming = iter(self.batches)
        for indices in upcoming:
            pending.append(self._pool.submit(self._load, indices))
            if len(pending) >= self.prefetch:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(upcoming, None)
            if nxt is not None:
                pending.append(self._pool.submit(self._load, nxt))
            if not batch.is_floating_point():
                batch = self.transform.normalize(batch.to(self.device, non_blocking=True))
            yield batch
