"""Stylize every photo of a folder with every style: what ``stylize batch`` does, from Python.

    from stylize.batch_runner import run_batch
    summary = run_batch("photos", ["starry.jpg", "sketch.png"], "out", Settings(resolution="2k"))

Why it is faster than a loop of ``stylize`` commands: the models load once, each style's
statistics are computed once (they depend on the style alone) and reused for every photo,
each photo is decoded once for all styles, and decoding the next photo and encoding the
previous result run in worker threads while the engine computes (:mod:`stylize.batch_pipeline`).

Why nothing is lost: results are written atomically, so a present output is a complete one
and a rerun skips it (``overwrite=True`` redoes it); a file that cannot be read, computed or
written is recorded with its reason and the batch moves on; every pair gets one line in a
JSON-lines report as it finishes. Ctrl-C stops computing, lets the writer finish the results
already computed, and raises :class:`BatchInterrupted` carrying the summary.
"""
from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stylize.engine.atomic import output_folder, remove_stale_parts
from stylize.engine.stylizer import Stylizer

from .api import as_list, build_stylizer, read_styles, stylize_file, stylize_prepared
from .batch_files import REPORT_NAME, Pair, check_styles, find_photos, output_format, plan_pairs
from .batch_pipeline import InlineWriter, Prefetcher, SequentialReader, WriterThread
from .batch_records import BatchInterrupted, BatchSummary, PairResult, Report, exclusive, failure_reason
from .image_stream import check_writable, fits_in_ram
from .imageio import ImageError, probe_image, read_image, same_file, write_image
from .masks import load_regions
from .settings import Settings

__all__ = ["Batch", "BatchInterrupted", "BatchSummary", "PairResult", "StyleCache", "run_batch",
           "stylize_group"]


class StyleCache:
    """Per style: its statistics at every level, computed on first use and kept (or, with
    ``cache=False``, the style image itself, so every photo recomputes them)."""

    def __init__(self, opts: Settings, cache: bool = True):
        self.opts, self.cache = opts, cache
        self._ready: dict[Path, object] = {}
        self._errors: dict[Path, str] = {}

    def get(self, style: Path, stylizer: Stylizer, held: int = 0) -> tuple[object, float]:
        """(statistics or image, seconds spent now); raises ImageError for a style that cannot be used.
        ``held``: bytes of images the batch holds meanwhile (its photo, the I/O threads' buffers)."""
        if style in self._errors:
            raise ImageError(self._errors[style])
        if style in self._ready:
            return self._ready[style], 0.0
        t = time.perf_counter()
        try:
            if self.cache:  # a style too large for RAM is read into a scratch file for this
                with read_styles([style], self.opts, role=None) as (image,):
                    self._ready[style] = stylizer.style_statistics(image, held=held)
            else:
                self._ready[style] = read_image(style, self.opts.style_px, self.opts.max_pixels,
                                                max_bytes=self.opts.decode_limit()).rgb
        except Exception as e:
            why = f"style {style}: {failure_reason(e, style)}"
            if isinstance(e, ImageError):  # the file's fault: every photo would meet it again
                self._errors[style] = why
            raise ImageError(why) from None  # else (memory held beside this photo): the next may fit
        return self._ready[style], time.perf_counter() - t


@dataclass
class _Job:
    pair: Pair
    rgb: object
    alpha: object
    result: PairResult


class Batch:
    """A planned batch: ``pairs`` (all), ``pending`` (to compute), ``skipped`` (already complete)."""

    def __init__(self, photos_dir: str | os.PathLike, styles: str | os.PathLike | list, out_dir: str | os.PathLike,
                 opts: Settings | None = None, *, fmt: str = "png", overwrite: bool = False,
                 report_path: str | os.PathLike | None = None, cache_style: bool = True, overlap_io: bool = True,
                 stylizer: Stylizer | None = None):
        self.photos_dir, self.out_dir = Path(photos_dir), Path(out_dir)
        self.opts = opts or Settings()
        fmt = output_format(fmt)
        if not self.photos_dir.is_dir():
            raise ImageError(f"{self.photos_dir}: not a folder")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ImageError(f"{self.out_dir}: not a folder (the output folder must be one)")
        if self.out_dir.resolve() == self.photos_dir.resolve():
            raise ImageError(f"{self.out_dir}: the output folder must not be the photo folder itself")
        if self.opts.bits == 16 and fmt != "tif":
            raise ImageError("16-bit output needs --format tif")
        if report_path is not None and not Path(report_path).parent.is_dir():
            raise ImageError(f"{report_path}: folder {Path(report_path).parent} does not exist")
        self.styles = check_styles([Path(s) for s in as_list(styles)])  # one path, or several
        for style in self.styles:  # a style over --max-pixels stops the batch now, not each pair later
            probe_image(style, self.opts.max_pixels, role="style", long_side=self.opts.style_px,
                        max_bytes=self.opts.decode_limit())
        if self.opts.mask is not None and Path(self.opts.mask).is_file():
            probe_image(self.opts.mask, self.opts.max_pixels, role="mask", max_bytes=self.opts.decode_limit())
        found = find_photos(self.photos_dir, exclude=self.out_dir)
        self.ignored, self.unreadable = found.ignored, found.unreadable
        if not found.photos:
            others = len(found.ignored) + len(found.unreadable)
            raise ImageError(f"{self.photos_dir}: no images in this folder" +
                             (f" ({others} other file(s) there, none an image)" if others else ""))
        self.pairs = plan_pairs(found.photos, self.styles, self.out_dir, fmt)
        done = (lambda p: False) if overwrite else (lambda p: p.output.is_file())
        self.skipped = [p for p in self.pairs if done(p)]
        self.pending = [p for p in self.pairs if not done(p)]
        self.report_path = Path(report_path) if report_path else self.out_dir / REPORT_NAME
        mask = [self.opts.mask] if self.opts.mask is not None else []
        inputs = [*self.styles, *(self.photos_dir / p for p in found.photos), *mask]  # photos: relative paths
        if any(same_file(self.report_path, p) for p in inputs):
            raise ImageError(f"{self.report_path}: the report would overwrite an input")
        # Recolouring the style to each photo's palette makes its statistics the photo's too.
        self.cache_style = cache_style and self.opts.preserve_color != "style"
        self.overlap_io = overlap_io
        if self.opts.style_weights is not None:
            raise ImageError("stylize batch applies each style on its own: --style-weights is for one stylize run")
        self._stylizer = stylizer

    def run(self, on_result: Callable[[PairResult], None] | None = None,
            on_start: Callable[[Pair], None] | None = None) -> BatchSummary:
        """Compute every pending pair; ``on_result`` sees each done/failed pair (any thread)."""
        t0 = time.perf_counter()
        output_folder(self.out_dir)
        with exclusive(self.out_dir):
            for pair in self.pending:
                remove_stale_parts(pair.output)
            report = Report(self.report_path, self.out_dir, on_result)
            try:
                for pair in self.skipped:
                    report.add(PairResult(pair, "skipped", "output exists (--overwrite redoes it)"), notify=False)
                for path, why in self.unreadable:
                    report.add_line(json.dumps({"photo": str(path), "style": None, "output": None,
                                                "status": "skipped", "reason": why}))
                interrupted = self._compute(report, on_start)
            finally:
                report.close()
        summary = BatchSummary(report.results, len(self.pending), self.ignored, time.perf_counter() - t0,
                               interrupted, self.report_path, self.unreadable, report.error)
        if interrupted:
            raise BatchInterrupted(summary)
        return summary

    def _groups(self) -> list[list[Pair]]:
        groups: dict[Path, list[Pair]] = {}
        for pair in self.pending:
            groups.setdefault(pair.photo, []).append(pair)
        return list(groups.values())

    def _read(self, group: list[Pair]):
        path = self.photos_dir / group[0].photo
        w, h = probe_image(path, self.opts.max_pixels, long_side=self.opts.output_px, max_bytes=self.opts.decode_limit())
        for pair in group:  # a size its format cannot hold (a JPEG past 65,500 px) fails now, not after compute
            check_writable(pair.output, h, w, self.opts.budget_bytes)
        if self.opts.store == "disk" or (self.opts.store == "auto" and not fits_in_ram(h, w, self.opts.budget_bytes)):
            return Streamed(path, (w, h))
        return read_image(path, self.opts.output_px, self.opts.max_pixels, max_bytes=self.opts.decode_limit())

    def mask_for(self, photo: Path) -> Path | None:
        """--mask FILE: that mask for every photo; --mask DIR: DIR/<photo's folder>/<photo stem>.*
        when there is one (no mask otherwise)."""
        mask = Path(self.opts.mask) if self.opts.mask is not None else None
        if mask is None or not mask.is_dir():
            return mask
        found = sorted(p for p in (mask / photo.parent).glob(glob.escape(photo.stem) + ".*") if p.is_file())
        return found[0] if found else None

    def regions_for(self, photo: Path, size: tuple[int, int]):
        mask = self.mask_for(photo)
        return load_regions(mask, size, 1, self.opts.max_pixels, max_bytes=self.opts.decode_limit()) if mask else None

    def _save(self, report: Report):
        def save(job: _Job) -> None:
            t = time.perf_counter()
            try:
                job.pair.output.parent.mkdir(parents=True, exist_ok=True)
                write_image(job.pair.output, job.rgb, job.alpha, quality=self.opts.quality, bits=self.opts.bits)
                job.result.status, job.result.reason = "done", None
            except Exception as e:  # disk full, permissions: this result is lost, the batch is not
                why = failure_reason(e, job.pair.output)
                job.result.status, job.result.reason = "failed", f"writing {job.pair.output}: {why}"
            job.rgb = None
            job.result.write_seconds = time.perf_counter() - t
            report.add(job.result)
        return save

    def _compute(self, report: Report, on_start: Callable[[Pair], None] | None) -> bool:
        """The main loop; returns True when interrupted. Compute stays in this (the main) thread."""
        if not self.pending:
            return False
        groups = self._groups()
        reader = Prefetcher(groups, self._read) if self.overlap_io else SequentialReader(groups, self._read)
        writer = WriterThread(self._save(report)) if self.overlap_io else InlineWriter(self._save(report))
        styles = StyleCache(self.opts, self.cache_style)
        interrupted = False
        try:
            for loaded in reader:
                stylize_group(self, loaded, lambda pair, st, held: styles.get(pair.style, st, held), report, writer,
                              on_start)
                loaded = None
        except KeyboardInterrupt:
            interrupted = True
        finally:
            try:
                interrupted = reader.close() or interrupted
            finally:
                interrupted = writer.close() or interrupted  # a Ctrl-C while the last results are written
        return interrupted

    def _get_stylizer(self) -> Stylizer:
        if self._stylizer is None:
            self._stylizer = build_stylizer(self.opts)
        return self._stylizer


def run_batch(photos_dir: str | os.PathLike, styles: str | os.PathLike | list, out_dir: str | os.PathLike,
              opts: Settings | None = None, **kwargs) -> BatchSummary:
    """Plan and run a batch (see :class:`Batch` for the keyword options)."""
    on_result = kwargs.pop("on_result", None)
    return Batch(photos_dir, styles, out_dir, opts, **kwargs).run(on_result=on_result)


def stylize_group(batch: Batch, loaded, style_of: Callable[[Pair, Stylizer, int], tuple[object, float]],
                  report, writer, on_start: Callable[[Pair], None] | None = None) -> None:
    """One photo's pairs (``loaded``: what the reader made of ``loaded.key``, the group): a photo
    that could not be read fails all its pairs; otherwise each pair is stylized with
    ``style_of(pair, stylizer, held)`` → (statistics, seconds spent) and handed to ``writer``, or its
    failure to ``report``. The body of the local loop, kept in one place so that
    :mod:`stylize.batch_ray` workers compute exactly what the local batch computes (the loop in
    :meth:`Batch._compute` is its twin and can call it)."""
    group, image = loaded.key, loaded.value
    if loaded.error is not None:
        reason = failure_reason(loaded.error, batch.photos_dir / group[0].photo)
        for pair in group:
            report.add(PairResult(pair, "failed", reason, read_seconds=loaded.seconds))
        return
    for i, pair in enumerate(group):
        if on_start:
            on_start(pair)
        stylizer = batch._get_stylizer()  # a model that will not load stops the batch
        result = PairResult(pair, "failed", size=image.size, read_seconds=loaded.seconds if i == 0 else 0)
        if isinstance(image, Streamed):  # too large for RAM: the single-file path, through scratch files
            _stylize_streamed(batch, image, pair, stylizer, result, report)
            continue
        try:
            pipeline = pipeline_bytes(batch, image)
            style, result.style_seconds = style_of(pair, stylizer, pipeline + image.rgb.nbytes)
            last = i == len(group) - 1
            content = image.rgb if last else image.rgb.copy()
            regions = batch.regions_for(pair.photo, image.size)
            t = time.perf_counter()
            rgb = stylize_prepared(content, [style], batch.opts, stylizer, None, True, regions=regions,
                                   held=pipeline + (0 if last else image.rgb.nbytes)).image  # the copy's source
            result.compute_seconds = time.perf_counter() - t
            del content
        except Exception as e:
            result.reason = failure_reason(e)
            report.add(result)
            continue
        writer.put(_Job(pair, rgb, image.alpha, result))
        del rgb


def pipeline_bytes(batch: Batch, image) -> int:
    """What the I/O threads hold while a photo computes: the next photo, decoded as the plan is
    made or soon after, and the last result, being encoded; each taken as this photo's size (a
    folder's photos are mostly one camera's). Declared, not measured at plan time (when the next
    decode may not have started), so the plan leaves them room and is the same on every run."""
    if not batch.overlap_io:
        return 0
    return 2 * (image.rgb.nbytes + (image.alpha.nbytes if image.alpha is not None else 0))


@dataclass
class Streamed:
    """A photo whose output does not fit in RAM: it is read and stylized through scratch files
    (:func:`stylize.api.stylize_file`) when its turn comes, not decoded ahead."""

    path: Path
    size: tuple[int, int]  # (width, height) of the output


def _stylize_streamed(batch: Batch, image: Streamed, pair: Pair, stylizer: Stylizer, result: PairResult,
                      report) -> None:
    t = time.perf_counter()
    try:
        pair.output.parent.mkdir(parents=True, exist_ok=True)
        settings = batch.opts.with_(mask=batch.mask_for(pair.photo))
        stylize_file(image.path, pair.style, pair.output, settings, stylizer=stylizer)
        result.status, result.reason = "done", None
    except Exception as e:  # a bad file or a full disk fails this pair, not the batch
        result.reason = failure_reason(e)
    result.compute_seconds = time.perf_counter() - t
    report.add(result)
