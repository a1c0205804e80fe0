"""Batched, seeded data augmentation on the training device.

Parameters are drawn from a seeded :class:`torch.Generator` (on the CPU, so results do not
depend on the device), then deterministic torch ops run on the batch wherever it lives:

* spatial (image and label together; label with nearest neighbour): flips, rotation,
  scaling and elastic deformation, composed into one ``grid_sample`` per batch;
* intensity (image only): Gaussian noise, Gaussian blur, brightness (multiplicative),
  contrast, simulated low resolution, gamma.

Inputs are ``(B, C, X, Y, Z)`` (3D) or ``(B, C, X, Y)`` (2D) tensors. MONAI's random
transforms act on one sample at a time on the CPU; these act on the whole batch on the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError

Range = tuple[float, float]


@dataclass(frozen=True)
class Augment:
    """nnU-Net-like augmentation of a training batch (defaults close to nnU-Net's).

    Attributes:
        flip_axes: spatial axes (0 = X) that may be mirrored, each with probability ``p_flip``.
        p_flip: probability per sample and axis of a mirroring.
        p_rotate: probability per sample of a rotation.
        rotate_deg: rotation angle range (degrees) about each axis (2D: in plane).
        p_scale: probability per sample of isotropic scaling.
        scale: zoom factor range (>1 enlarges the content).
        p_elastic: probability per sample of an elastic deformation.
        elastic_voxels: maximum displacement, voxels.
        elastic_grid: control points per axis of the random displacement field.
        p_noise / noise_std: additive Gaussian noise with a std drawn from the range.
        p_blur / blur_sigma: Gaussian blur with sigma (voxels) drawn from the range.
        p_brightness / brightness: multiply by a factor from the range.
        p_contrast / contrast: scale around the mean, clipped to the original range.
        p_low_res / low_res_zoom: downsample (nearest) by the zoom, upsample back (linear).
        p_gamma / gamma: ``x' = min + (max-min) * ((x-min)/(max-min)) ** gamma`` per channel.
    """

    flip_axes: tuple[int, ...] = (0, 1, 2)
    p_flip: float = 0.5
    p_rotate: float = 0.2
    rotate_deg: Range = (-30.0, 30.0)
    p_scale: float = 0.2
    scale: Range = (0.7, 1.4)
    p_elastic: float = 0.0
    elastic_voxels: float = 4.0
    elastic_grid: int = 5
    p_noise: float = 0.1
    noise_std: Range = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma: Range = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness: Range = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: Range = (0.75, 1.25)
    p_low_res: float = 0.25
    low_res_zoom: Range = (0.5, 1.0)
    p_gamma: float = 0.3
    gamma: Range = (0.7, 1.5)

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name.startswith("p_") and not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"augment: {name} must be a probability in [0, 1], got {value}")
            if isinstance(value, (tuple, list)) and name != "flip_axes" and (len(value) != 2 or value[0] > value[1]):
                raise ConfigError(f"augment: {name} must be a range (low, high) with low <= high, got {value}")

    def __call__(self, image: Tensor, label: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """Augment a batch.

        Args:
            image: ``(B, C, *S)`` float tensor (any device).
            label: ``(B, 1, *S)`` integer tensor on the same grid, or None.
            generator: CPU generator all random parameters are drawn from.

        Returns:
            ``(image, label)`` of the same shapes and dtypes.
        """
        if image.ndim not in (4, 5):
            raise ConfigError(f"augment: expected (B, C, X, Y[, Z]), got shape {tuple(image.shape)}")
        image, label = self.spatial(image, label, generator)
        return self.intensity(image, generator), label

    # ---- parameter draws --------------------------------------------------------------
    @staticmethod
    def _uniform(lo: float, hi: float, n: int, g: torch.Generator) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

    @staticmethod
    def _coin(p: float, n: int, g: torch.Generator) -> Tensor:
        return torch.rand(n, generator=g) < p

    def spatial(self, image: Tensor, label: Tensor | None, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """Flips, then rotation/scaling/elastic in one resampling (label: nearest)."""
        b, dims = image.shape[0], image.ndim - 2
        axes = [a for a in self.flip_axes if a < dims]
        flips = self._coin(self.p_flip, b * len(axes), g).view(b, len(axes)) if axes else None
        rot = self._coin(self.p_rotate, b, g)
        n_angles = 3 if dims == 3 else 1
        angles = self._uniform(*self.rotate_deg, b * n_angles, g).view(b, n_angles) * math.pi / 180
        sc = self._coin(self.p_scale, b, g)
        zoom = self._uniform(*self.scale, b, g)
        el = self._coin(self.p_elastic, b, g)
        noise = torch.randn((b, dims, *(self.elastic_grid,) * dims), generator=g)
        if flips is not None and bool(flips.any()):
            image, label = flip(image, label, flips, axes)
        if not (bool(rot.any()) or bool(sc.any()) or bool(el.any())):
            return image, label
        matrices = torch.eye(dims, dtype=torch.float64).repeat(b, 1, 1)
        for i in range(b):
            if rot[i]:
                matrices[i] = rotation_matrix(angles[i]) @ matrices[i]
            if sc[i]:
                matrices[i] = matrices[i] / zoom[i]
        displacement = noise * self.elastic_voxels * el.view(b, *(1,) * (dims + 1)).to(noise.dtype)
        return affine_elastic(image, label, matrices, displacement if bool(el.any()) else None)

    def intensity(self, image: Tensor, g: torch.Generator) -> Tensor:
        """Noise, blur, brightness, contrast, low resolution, gamma (each per sample)."""
        b = image.shape[0]
        draws = {
            "noise": (self._coin(self.p_noise, b, g), self._uniform(*self.noise_std, b, g)),
            "blur": (self._coin(self.p_blur, b, g), self._uniform(*self.blur_sigma, b, g)),
            "brightness": (self._coin(self.p_brightness, b, g), self._uniform(*self.brightness, b, g)),
            "contrast": (self._coin(self.p_contrast, b, g), self._uniform(*self.contrast, b, g)),
            "low_res": (self._coin(self.p_low_res, b, g), self._uniform(*self.low_res_zoom, b, g)),
            "gamma": (self._coin(self.p_gamma, b, g), self._uniform(*self.gamma, b, g)),
        }
        out = image
        mask, std = draws["noise"]
        if bool(mask.any()):
            eps = torch.randn(image.shape, generator=g, dtype=torch.float32).to(image.device, image.dtype)
            out = add_noise(out, eps, (std * mask).to(image.device, image.dtype))
        mask, sigma = draws["blur"]
        for i in torch.nonzero(mask).flatten().tolist():
            out = _set(out, i, gaussian_blur(out[i : i + 1], float(sigma[i])))
        mask, factor = draws["brightness"]
        if bool(mask.any()):
            out = out * torch.where(mask, factor, 1.0).to(out.device, out.dtype).view(b, *(1,) * (out.ndim - 1))
        mask, factor = draws["contrast"]
        for i in torch.nonzero(mask).flatten().tolist():
            out = _set(out, i, adjust_contrast(out[i : i + 1], float(factor[i])))
        mask, zoom = draws["low_res"]
        for i in torch.nonzero(mask).flatten().tolist():
            out = _set(out, i, simulate_low_resolution(out[i : i + 1], float(zoom[i])))
        mask, gamma = draws["gamma"]
        for i in torch.nonzero(mask).flatten().tolist():
            out = _set(out, i, adjust_gamma(out[i : i + 1], float(gamma[i])))
        return out


def _set(x: Tensor, i: int, value: Tensor) -> Tensor:
    x = x.clone() if x.requires_grad else x
    x[i : i + 1] = value
    return x


# ---- deterministic ops ----------------------------------------------------------------------


def flip(image: Tensor, label: Tensor | None, flips: Tensor, axes: Sequence[int]) -> tuple[Tensor, Tensor | None]:
    """Mirror sample ``i`` along spatial axis ``axes[j]`` where ``flips[i, j]`` is true."""
    image = image.clone()
    label = label.clone() if label is not None else None
    for i in range(image.shape[0]):
        dims = [a + 1 for a, f in zip(axes, flips[i].tolist()) if f]
        if dims:
            image[i] = torch.flip(image[i], dims)
            if label is not None:
                label[i] = torch.flip(label[i], dims)
    return image, label


def rotation_matrix(angles: Tensor) -> Tensor:
    """2×2 (one angle) or 3×3 (angles about X, Y, Z; applied X first) rotation, float64."""
    if angles.numel() == 1:
        c, s = math.cos(float(angles[0])), math.sin(float(angles[0]))
        return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    ax, ay, az = (float(a) for a in angles)
    rx = torch.tensor(
        [[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]], dtype=torch.float64
    )
    ry = torch.tensor(
        [[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]], dtype=torch.float64
    )
    rz = torch.tensor(
        [[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]], dtype=torch.float64
    )
    return rz @ ry @ rx


def affine_elastic(
    image: Tensor, label: Tensor | None, matrices: Tensor, displacement: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Resample about the patch centre: input voxel = ``matrix @ (output voxel - c) + c + d``.

    Args:
        image: ``(B, C, *S)``, resampled linearly (zeros outside).
        label: ``(B, 1, *S)`` integer or None, resampled with nearest neighbour (0 outside).
        matrices: ``(B, D, D)`` maps in voxel units (axis order X, Y, Z).
        displacement: optional ``(B, D, *G)`` coarse displacement field in voxels, upsampled
            linearly to ``S`` (elastic deformation).

    Returns:
        ``(image, label)`` with the input shapes and dtypes.
    """
    b, dims = image.shape[0], image.ndim - 2
    size = torch.tensor(image.shape[2:], dtype=torch.float64)
    half = (size - 1).clamp_min(1) / 2
    # normalised coords u = v / half (align_corners=True); theta = N^-1 A N, axes reversed for grid_sample
    theta = torch.diag_embed(1 / half).unsqueeze(0) @ matrices @ torch.diag_embed(half).unsqueeze(0)
    theta = theta.flip(1).flip(2)
    theta = torch.cat([theta, torch.zeros(b, dims, 1, dtype=torch.float64)], dim=2)
    device = image.device
    grid = F.affine_grid(theta.to(device, torch.float32), list(image.shape), align_corners=True)
    if displacement is not None:
        disp = displacement.to(device, torch.float32) / half.to(device, torch.float32).view(1, dims, *(1,) * dims)
        mode = "trilinear" if dims == 3 else "bilinear"
        disp = F.interpolate(disp, size=tuple(image.shape[2:]), mode=mode, align_corners=True)
        grid = grid + disp.flip(1).movedim(1, -1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True).to(image.dtype)
    lab = None
    if label is not None:
        lab = F.grid_sample(label.float(), grid, mode="nearest", padding_mode="zeros", align_corners=True)
        lab = lab.round().to(label.dtype)
    return out, lab


def add_noise(image: Tensor, eps: Tensor, std: Tensor) -> Tensor:
    """``image + std[i] * eps`` per sample ``i`` (``eps`` standard normal, image's shape)."""
    return image + eps * std.view(-1, *(1,) * (image.ndim - 1))


def gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Normalised 1D Gaussian of radius ``ceil(3 sigma)`` voxels."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with ``sigma`` voxels on every spatial axis (reflect padding)."""
    b, c = image.shape[:2]
    dims = image.ndim - 2
    k = gaussian_kernel(sigma, image.device, image.dtype)
    conv = F.conv3d if dims == 3 else F.conv2d
    x = image.reshape(b * c, 1, *image.shape[2:])
    r = k.numel() // 2
    for axis in range(dims):
        shape = [1, 1] + [1] * dims
        shape[2 + axis] = k.numel()
        pad = [0, 0] * dims
        pad[2 * (dims - 1 - axis)] = r
        pad[2 * (dims - 1 - axis) + 1] = r
        mode = "reflect" if image.shape[2 + axis] > r else "replicate"
        x = conv(F.pad(x, pad, mode=mode), k.view(shape))
    return x.reshape(image.shape)


def adjust_contrast(image: Tensor, factor: float) -> Tensor:
    """Scale each channel around its mean by ``factor``, clipped to its original range."""
    dims = tuple(range(2, image.ndim))
    mean = image.mean(dim=dims, keepdim=True)
    lo = image.amin(dim=dims, keepdim=True)
    hi = image.amax(dim=dims, keepdim=True)
    return torch.maximum(torch.minimum((image - mean) * factor + mean, hi), lo)


def simulate_low_resolution(image: Tensor, zoom: float) -> Tensor:
    """Downsample by ``zoom`` (nearest) and upsample back to the size (linear)."""
    size = tuple(image.shape[2:])
    small = tuple(max(1, round(s * zoom)) for s in size)
    mode = "trilinear" if image.ndim == 5 else "bilinear"
    down = F.interpolate(image.float(), size=small, mode="nearest")
    return F.interpolate(down, size=size, mode=mode, align_corners=False).to(image.dtype)


def adjust_gamma(image: Tensor, gamma: float) -> Tensor:
    """Gamma on each channel rescaled to [0, 1], then back to its original range."""
    dims = tuple(range(2, image.ndim))
    lo = image.amin(dim=dims, keepdim=True)
    rng = (image.amax(dim=dims, keepdim=True) - lo).clamp_min(1e-7)
    return ((image - lo) / rng).clamp(0, 1).pow(gamma) * rng + lo
