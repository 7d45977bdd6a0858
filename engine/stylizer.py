"""The entry point: ``Stylizer(...).stylize(content, style)`` in bounded memory.

Per level (5 → 1 by default) the engine makes two passes over the image:

1. statistics: encode every tile (halo = encoder radius), merge its feature moments in
   fp64, and optionally keep its core features (see :mod:`engine.memory` for when);
2. transform: fold WCT (or AdaIN) into one affine map, then per tile encode (or read the
   cached features), apply the map, decode (halo = decoder radius, plus the encoder's when
   re-encoding) and write only the tile's core.

With exact global statistics, aligned origins and halos ≥ receptive field, the tiled
result equals the whole-image result; whole-image mode is the same code with one tile.
Images between levels live in stores (:mod:`stylize.engine.store`): (3, H, W) float32 arrays
in RAM, or scratch files read and written box by box when they do not fit the budget. Levels
write into a second store and swap, so peak RAM is the tiles and caches the planner allows,
plus two or three image buffers only when those are in RAM.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .backend import Backend
from .color import MODES as COLOR_MODES
from .color import keep_luminance_of, recolour, rgb_moments_of
from .memory import (BudgetTooSmall, LevelPlan, check_host_budget, default_cpu_budget, heap_ceiling, held_bytes,
                     parse_size, plan_level, room_for, working_bytes)
from .stroke_scale import NATIVE, compose_base, downscale, split_levels, stroke_factor, working_size
from .regions import Regions, blend_maps
from .run_types import Progress, RunReport, StyleInput, Stylized, StyleStats, as_store, ram_bytes
from .store import RamStore, Store, StoreFactory
from .tiles import Box, Tile, plan_tiles, tiled_map
from .wct import (DEFAULT_REL_EPS, TRANSFORMS, Moments, flat_to_rounding, merge_moments, mix_affine, moments_bytes,
                  tile_moments)

# A share of the budget kept free of tiles: allocator slack and the transient strips of resizing
# and encoding (at 32K a peak of 2.01 GiB was measured under a 2 GiB budget without it).
SAFETY = 0.08

class Stylizer:
    """Multi-level WCT over any :class:`Backend`, on images of any size.

    The stylizer knows the model only through the backend's geometry; a backend for a named
    model comes from the runtimes layer (``stylize.export.create_backend``) or the
    application's one entry point (``stylize.stylize``). ``tile`` forces a tile side in pixels; otherwise the engine runs whole-image when it
    fits ``max_memory`` and tiles when it does not. ``max_memory`` bounds the whole process
    on CPU (image buffers included) and the tile working set on a GPU.
    """

    def __init__(self, backend: Backend, *, levels: tuple[int, ...] = (5, 4, 3, 2, 1), tile: int | None = None,
                 max_memory: str | int | None = None, rel_eps: float = DEFAULT_REL_EPS):
        missing = [k for k in levels if k not in backend.levels()]
        if missing:
            raise ValueError(f"backend has no level(s) {missing}")
        self.backend = backend
        self.levels = tuple(levels)
        self.tile = tile
        self.max_memory = parse_size(max_memory)
        if backend.device.type == "cpu":
            check_host_budget(self.max_memory)
        self.rel_eps = rel_eps

    # ----------------------------------------------------------------------------- planning
    def _budget(self) -> float:
        if self.backend.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.backend.device)
            return self.max_memory or free
        return self.max_memory or default_cpu_budget()

    def _available(self, image_bytes: int, held: int = 0, measured: bool = False) -> float:
        """Bytes the tiles (and caches) of one level may use, beside ``image_bytes`` of buffers
        still to be made and ``held`` bytes of images the process holds (see
        :func:`engine.memory.held_bytes`: the plan is a function of the run, not of the moment;
        ``measured``: of the process's RSS now)."""
        if self.backend.device.type == "cuda":
            return 0.8 * self._budget()
        return (1 - SAFETY) * self._budget() - held_bytes(held, measured) - image_bytes

    def _between_tiles(self, level: int, done: Tile) -> None:
        """Before the next tile (sized as ``done``): room for it under the run's ceiling
        (:meth:`_host_ceiling`), freed heap handed back if the process holds more than planned."""
        room_for(working_bytes(self.backend.geometry(level), done.read.height, done.read.width))

    def _host_ceiling(self):
        """The context tiles run in: on the CPU, the RSS the backend's layers may reach before the
        freed heap is handed back (see :func:`engine.memory.room_for`)."""
        return heap_ceiling((1 - SAFETY) * self._budget() if self.backend.device.type == "cpu" else None)

    def plan(self, height: int, width: int, extra_buffers: int = 1,
             levels: tuple[int, ...] | None = None, held: int = 0) -> list[LevelPlan]:
        """The per-level plan for an image, given how many more image buffers in RAM it needs
        and how many bytes of images the process holds already (the content, when in RAM)."""
        return self._plan_levels(height, width, extra_buffers * 3 * height * width * 4, held, self.tile,
                                 self.levels if levels is None else levels)

    def _plan_levels(self, height: int, width: int, image_bytes: int, held: int, tile: int | None,
                     levels: tuple[int, ...], what: str = "the content") -> list[LevelPlan]:
        """Planned with the fixed charge; a budget too tight for that is planned from the RSS
        measured now (so the charge never raises the least budget that works; such a plan may
        differ from run to run), and one too tight for that too is a one-line error naming the
        least budget."""
        def plan(available: float) -> list[LevelPlan]:
            return [plan_level(self.backend.geometry(k), height, width, available, tile) for k in levels]

        error = None
        for measured in (False, True) if self.backend.device.type == "cpu" else (False,):
            try:
                return plan(self._available(image_bytes, held, measured))
            except BudgetTooSmall as e:
                error = e
        budget = self._budget()
        share = 0.8 if self.backend.device.type == "cuda" else 1 - SAFETY  # of the budget tiles may use
        least = math.ceil((share * budget + error.short) / share / 2**20)
        # A plan this tight is made from the RSS of the moment, which the next run's differs from
        # (314M suggested, 321M needed): the example leaves room for that.
        example = least + max(16, math.ceil(0.03 * least))
        given = (f"{budget / 2**30:.2f} GiB" if budget >= 2**30 else f"{budget / 2**20:.0f} MiB"
                 if budget >= 2**20 else f"{budget:,} bytes")
        raise BudgetTooSmall(f"--max-memory {given} is too small for {what}: {error}; the least budget that "
                             f"works here is about {least} MiB (e.g. --max-memory {example}M)", error.short) from None

    # ----------------------------------------------------------------------------- passes
    def _moments(self, level: int, image: Store, plan: LevelPlan, progress: Progress | None,
                 phase: str, cache: torch.Tensor | None = None, valid: tuple[int, int] | None = None,
                 regions: Regions | None = None) -> tuple[Moments | list[Moments | None], tuple]:
        """``(moments, (lo, hi))``: the moments of the level's features over the image, and each
        channel's least and greatest pixel (see :func:`stylize.engine.wct.flat_to_rounding`).
        ``valid`` limits the moments to the top-left (rows, cols) of the feature grid (the
        features a whole-image pass has). With ``regions``, one weighted moment set per region
        (None for an empty region).

        With ``valid``, tiles read no further than the image's real edge, not its padded one:
        tile origins sit on the stride grid, so each layer of a border tile then floors and
        reflects where the unpadded whole-image pass does, and the features are that pass's
        (read to the padded edge, a tiled 1201x1020 style's level-5 covariance was 2.6 % off)."""
        g = self.backend.geometry(level)
        tiles = plan_tiles(*plan.padded, plan.tile, g.encoder_radius, g.stride)
        moments = None
        per_region: list[Moments | None] = [None] * (len(regions.styles) if regions else 0)
        read, lo, hi = self._reader(image, clip=valid is not None), None, None

        def reading(box: Box) -> torch.Tensor:  # read boxes cover the padded image as the cores do
            nonlocal lo, hi
            x = read(box)
            least, most = x.amin((0, 2, 3)), x.amax((0, 2, 3))
            lo, hi = (least, most) if lo is None else (torch.minimum(lo, least), torch.maximum(hi, most))
            return x

        with self._host_ceiling():
            for i, (t, f) in enumerate(tiled_map(reading, lambda x: self.backend.encode(level, x),
                                                 tiles, scale=1 / g.stride)):
                counted = f
                if valid is not None:
                    c = t.core.scale(1 / g.stride)
                    counted = f[..., :max(0, valid[0] - c.y0), :max(0, valid[1] - c.x0)]
                room_for(moments_bytes(counted))
                if regions is not None:
                    m = regions.pooled(t.core, g.stride, counted.device)
                    for r in range(len(per_region)):
                        part = tile_moments(counted, m[r])
                        if part is not None:
                            per_region[r] = merge_moments(per_region[r], part)
                elif counted.numel():
                    moments = merge_moments(moments, tile_moments(counted))
                if cache is not None:
                    c = t.core.scale(1 / g.stride)
                    cache[:, :, c.y0:c.y1, c.x0:c.x1] = f
                del f, counted
                if i + 1 < len(tiles):
                    self._between_tiles(level, t)
                if progress:
                    progress(level, phase, i + 1, len(tiles))
        return (per_region if regions is not None else moments), (lo, hi)

    def _reader(self, image: Store, clip: bool = False) -> Callable[[Box], torch.Tensor]:
        """Boxes of ``image`` as (1, C, h, w) tensors on the backend's device; past its edges
        reflected, or with ``clip`` cut at its bottom and right edges."""
        device = self.backend.device
        _, h, w = image.shape
        return lambda box: torch.from_numpy(image.read(box.clip(h, w) if clip else box))[None].to(device)

    def style_statistics(self, style: np.ndarray | Store, progress: Progress | None = None,
                         held: int = 0) -> StyleStats:
        """Per-level style moments: they depend on the style alone, so batches reuse them.

        Taken over exactly the features a whole-image pass of the style has, as the paper
        computes them: pooling floors, so a side that is not a multiple of the stride has no
        features for its trailing pixels. When the whole style fits, it is encoded unpadded in
        one piece (exactly the paper's features); a style too large for that is tiled over its
        reflect-padded extent and only the whole-pass feature grid is counted. ``style`` may be
        a store: a painting scanned at 16K is read tile by tile from a scratch file. ``held``:
        bytes of other images the process holds (:meth:`stylize` passes its content's).
        """
        source = as_store(style, "style")
        _, h, w = source.shape
        stats = {}
        # A forced --tile is for the content: a style that fits is encoded whole.
        for p in self._plan_levels(h, w, 0, held + ram_bytes(source), None, self.levels, "the style"):
            g = self.backend.geometry(p.level)
            valid = (h // g.stride, w // g.stride)
            if min(valid) < 2:  # too small to reflect-pad at the deepest layer: use the padded image
                stats[p.level], _ = self._moments(p.level, source, p, progress, "style")
            elif p.tile is None:
                pixels = style if isinstance(style, np.ndarray) else source.read(Box(0, h, 0, w))
                f = self.backend.encode(p.level, torch.from_numpy(np.ascontiguousarray(pixels))[None])
                del pixels
                stats[p.level] = tile_moments(f)
                if progress:
                    progress(p.level, "style", 1, 1)
            else:
                stats[p.level], _ = self._moments(p.level, source, p, progress, "style", valid=valid)
        return {k: m.to("cpu") for k, m in stats.items()}

    def stylize(self, content: np.ndarray | Store, style: StyleInput | Sequence[StyleInput], *, alpha: float = 1.0,
                transform: str = "wct", stroke_scale: str | float = NATIVE,
                style_weights: Sequence[float] | None = None, preserve_color: str = "off",
                regions: Regions | None = None, progress: Progress | None = None, consume_content: bool = False,
                stores: StoreFactory | None = None, held: int = 0) -> Stylized:
        """Stylize a (3, H, W) float32 image in [0, 1] (an array, or a store for images that do
        not fit in RAM); see :class:`Stylized` for the result.

        ``style`` is an image or the output of :meth:`style_statistics`. ``stroke_scale`` is
        ``native`` (the paper's pipeline), ``auto`` (the look of a screen-size stylization at
        any size) or a factor ≥ 1: see :mod:`stylize.engine.stroke_scale`. With
        ``consume_content`` the content buffer is reused for intermediate levels. ``stores``
        makes the intermediate images (default: arrays in RAM).

        Several styles with ``style_weights`` mix: each level's map is the weighted sum of the
        styles' maps (each is affine, so the mix is one affine map). ``preserve_color`` keeps the
        photo's colours: ``luminance`` or ``style`` (see :mod:`stylize.engine.color`).
        ``regions`` paints each region of a mask with its own style, or none
        (:mod:`stylize.engine.regions`); ``style_weights`` then do not apply. ``held``: bytes of
        other images the process holds, or will while this runs (a batch's next photo and last
        result), which the plan leaves room for.
        """
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform '{transform}': choose {', '.join(TRANSFORMS)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if preserve_color not in COLOR_MODES:
            raise ValueError(f"preserve_color must be one of {COLOR_MODES}, got '{preserve_color}'")
        stores = stores or StoreFactory()
        source = as_store(content, "content")
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        weights = [1.0] * len(styles) if style_weights is None else [float(w) for w in style_weights]
        if regions is not None:
            if style_weights is not None or any(i is not None and not 0 <= i < len(styles) for i in regions.styles):
                raise ValueError("regions pick one style each (by index into the styles); no style weights")
            if regions.weights.shape != (len(regions.styles), *source.shape[1:]):
                raise ValueError(f"region weights of shape {regions.weights.shape} for {len(regions.styles)} region(s) "
                                 f"and a {source.shape[2]}x{source.shape[1]} content: one (H, W) plane per region")
            weights = [1.0] * len(styles)
        for st in styles:  # statistics of other levels would fail after the levels they have
            missing = [k for k in self.levels if isinstance(st, dict) and k not in st]
            if missing:
                raise ValueError(f"style statistics of levels {sorted(st)} lack level(s) {missing} of this run: "
                                 "take them with the same levels")
        if len(weights) != len(styles) or not sum(weights) > 0 or min(weights) < 0:
            raise ValueError(f"{len(styles)} style(s) need as many weights >= 0 with a positive sum, got {weights}")
        if preserve_color == "style":
            if any(isinstance(st, dict) for st in styles):
                raise ValueError("preserve_color='style' recolours the style image: pass images, not statistics")
            photo = rgb_moments_of(source)
            styles = [recolour(st, photo, self.rel_eps, stores if stores.on_disk else None) for st in styles]
        held += ram_bytes(source, *styles, regions.weights if regions is not None else None)
        keep = preserve_color == "luminance"
        consume_content = consume_content and not keep  # the photo's chroma is needed at the end
        _, h, w = source.shape
        factor = stroke_factor(h, w, stroke_scale)
        coarse, fine = split_levels(self.levels)
        staged = factor > 1.0 and bool(coarse)
        report = RunReport([], stroke_factor=factor)
        ram = 0 if stores.on_disk else (1 if consume_content else 2)  # image buffers the levels add in RAM
        if staged:
            report.working_size = working_size(h, w, factor)
            plans = (self.plan(*report.working_size, 2, coarse, held),
                     self.plan(h, w, ram, fine, held) if fine else [])
        else:
            plans = (self.plan(h, w, ram, held=held),)
        report.plans = [p for stage in plans for p in stage]  # all planned before any compute
        mix = [(wt, st if isinstance(st, dict) else self.style_statistics(st, progress, held - ram_bytes(st)))
               for wt, st in zip(weights, styles) if wt > 0 or regions is not None]

        def run(image: Store, stage: list[LevelPlan], consume: bool, make, where: Regions | None) -> Store:
            return self._levels(image, stage, mix, alpha, transform, progress, consume, report, make, where)

        if staged:
            small = downscale(source, report.working_size)
            small_regions = regions and Regions(RamStore(downscale(regions.weights, report.working_size, "linear")),
                                                regions.styles)
            painted = run(RamStore(small.copy()), plans[0], True, StoreFactory(), small_regions)
            base = source if consume_content else stores(*source.shape)
            compose_base(source, small, painted.array, base)
            del small, painted
            out = run(base, plans[1], True, stores, regions) if fine else base
        else:
            out = run(source, plans[0], consume_content, stores, regions)
        if keep:
            keep_luminance_of(out, source)
        if not isinstance(out, RamStore):
            return Stylized(None, report, out)
        image = out.array
        np.nan_to_num(image, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(image, 0.0, 1.0, out=image)
        return Stylized(image, report, out)

    def _levels(self, content: Store, plans: list[LevelPlan], mix: list[tuple[float, StyleStats]], alpha: float,
                transform: str, progress: Progress | None, consume_content: bool, report: RunReport,
                make: StoreFactory, regions: Regions | None = None) -> Store:
        """Run the planned levels in order on ``content``; returns the last level's output store."""
        shape = content.shape
        src, dst, spare = content, make(*shape), content if consume_content else None
        for plan in plans:
            styles = [(w, stats[plan.level]) for w, stats in mix]
            report.tiles += self._level(plan, src, dst, styles, alpha, transform, progress, regions)
            if spare is None:
                spare = make(*shape)
            src, dst = dst, (spare if src is content else src)
        if dst is not content:
            dst.close()  # the other buffer goes now, before the caller encodes the result
        return src

    def _level(self, plan: LevelPlan, src: Store, dst: Store, styles: list[tuple[float, Moments]], alpha: float,
               transform: str, progress: Progress | None, regions: Regions | None = None) -> int:
        level, g, be = plan.level, self.backend.geometry(plan.level), self.backend
        ph, pw = plan.padded
        cache = None
        if plan.cache_features:
            where = be.device if plan.tile is None else "cpu"
            cache = torch.empty((1, g.channels, ph // g.stride, pw // g.stride), device=where)
        content, (lo, hi) = self._moments(level, src, plan, progress, "stats", cache, regions=regions)
        if flat_to_rounding(lo, hi):  # a flat image carrying the last decoder's rounding: nothing to whiten
            content = [m and m.flattened() for m in content] if regions is not None else content.flattened()
        apply = self._painter(level, content, styles, alpha, transform, regions)
        if cache is not None:
            halo = g.decoder_radius
            read = lambda box: (cache[:, :, box.y0 // g.stride:box.y1 // g.stride,  # noqa: E731
                                      box.x0 // g.stride:box.x1 // g.stride], box)
            predict = lambda fb: be.decode(level, apply(*fb))  # noqa: E731
        else:
            halo = g.radius
            image = self._reader(src)
            read = lambda box: (image(box), box)  # noqa: E731
            predict = lambda xb: be.decode(level, apply(be.encode(level, xb[0]), xb[1]))  # noqa: E731
        tiles = plan_tiles(ph, pw, plan.tile, halo, g.stride)
        _, h, w = dst.shape
        with self._host_ceiling():
            for i, (t, y) in enumerate(tiled_map(read, predict, tiles)):
                core = t.core.clip(h, w)
                if core.height > 0 and core.width > 0:
                    dst.write(core.y0, core.x0, y[0, :, :core.height, :core.width].cpu().numpy())
                del y
                if i + 1 < len(tiles):
                    self._between_tiles(level, t)
                if progress:
                    progress(level, "render", i + 1, len(tiles))
        return len(tiles)

    def _painter(self, level: int, content, styles: list[tuple[float, Moments]], alpha: float, transform: str,
                 regions: Regions | None) -> Callable[[torch.Tensor, Box], torch.Tensor]:
        """features, box ↦ transformed features: one (mixed) map, or one map per region blended
        by the region weights of the box."""
        be, fn = self.backend, TRANSFORMS[transform]
        if regions is None:
            maps = [fn(content, style, alpha, self.rel_eps) for _, style in styles]
            a, b = mix_affine(maps, [w for w, _ in styles]) if len(maps) > 1 else maps[0]
            a, b = a.float(), b.float()
            return lambda f, box: be.transform(level, f, a, b)
        g = be.geometry(level)
        eye = (torch.eye(g.channels, dtype=torch.float64), torch.zeros(g.channels, dtype=torch.float64))
        maps = [eye if i is None or m is None else fn(m, styles[i][1], alpha, self.rel_eps)
                for i, m in zip(regions.styles, content)]
        maps = [(a.float(), b.float()) for a, b in maps]
        return lambda f, box: blend_maps(f, regions.pooled(box, g.stride, f.device), maps,
                                         lambda x, a, b: be.transform(level, x, a, b))
