"""Which files a batch stylizes and where each result goes, decided before any compute.

A photo folder holds more than photos (sidecars, notes, thumbnails) and photos that lost
their extension, so files are recognised by their first bytes, not by name. A file that is
named like an image but is not one, or whose header a decoder recognises and then chokes on,
is kept as a candidate: it fails loudly in the batch instead of vanishing silently. What is
not a regular file (a FIFO, a socket, a broken link or a link loop, an unreadable folder) is
reported as skipped; no file, however hostile, stops the scan. Hidden files and folders
(``.name``, e.g. macOS ``._IMG.jpg`` resource forks) and the output folder itself (when it
lies inside the photo folder) are never walked.

Output names: ``OUT_DIR/<folder of the photo, relative to PHOTOS_DIR>/<photo stem>__<style
stem>.<format>``. Two photos of one folder that share a stem (``a.jpg``, ``a.png``) get the
extension in the name instead (``a_jpg__style.png``, ``a_png__style.png``), so no result
overwrites another; two styles sharing a stem are refused up front.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .image_guard import ImageError, is_tiff, not_readable, open_regular, quiet_decoders

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif",
                    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".heic", ".heif", ".avif"}
FORMATS = {"png": ".png", "jpg": ".jpg", "tif": ".tif"}
FORMAT_ALIASES = {"jpeg": "jpg", "tiff": "tif"}  # the other spellings single runs take as suffixes


def looks_like_image(path: Path) -> bool:
    """True when a decoder recognises the file's header (the body may still be bad): then
    reading it either works or says why, in the batch's report."""
    try:
        with open_regular(path) as f, quiet_decoders():
            if is_tiff(f):  # tifffile reads TIFFs PIL cannot (BigTIFF, 16-bit RGB)
                return True
            with Image.open(f) as im:  # reads the header only
                return bool(im.format)
    except (ImageError, UnidentifiedImageError):
        return False
    except Exception:  # noqa: BLE001 - a plugin took the header, then failed: a broken image
        return True


REPORT_NAME = "batch-report.jsonl"  # in every batch's output folder


@dataclass
class Found:
    photos: list[Path] = field(default_factory=list)  # relative to the photo folder, sorted
    ignored: list[Path] = field(default_factory=list)  # files that are not images by name or content
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (path, why): FIFOs, link loops...


def find_photos(photos_dir: Path, exclude: Path | None = None) -> Found:
    """Walk ``photos_dir`` recursively (sorted, deterministic), skipping hidden entries and ``exclude``."""
    found = Found()
    exclude = exclude.resolve() if exclude else None

    def unreadable_folder(e: OSError) -> None:
        found.unreadable.append((Path(e.filename).relative_to(photos_dir), f"cannot read the folder ({e.strerror})"))

    for root, dirs, files in os.walk(photos_dir, onerror=unreadable_folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != exclude)
        for d in [d for d in dirs if (here / d / REPORT_NAME).is_file()]:  # earlier results are not photos
            dirs.remove(d)
            found.unreadable.append(((here / d).relative_to(photos_dir), f"a batch's output folder (it holds "
                                     f"{REPORT_NAME}), not searched for photos"))
        for d in [d for d in dirs if (here / d).is_symlink()]:  # os.walk does not follow them
            found.unreadable.append(((here / d).relative_to(photos_dir), "link to a folder, not followed"))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = here / name
            rel = path.relative_to(photos_dir)
            why = not_readable(path)
            if why:
                found.unreadable.append((rel, why))
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS or looks_like_image(path):
                found.photos.append(rel)
            else:
                found.ignored.append(rel)
    return found


def check_styles(styles: list[Path]) -> list[Path]:
    """Every style must be a readable image with a distinct stem (the stem names the outputs)."""
    if not styles:
        raise ImageError("no STYLE given")
    by_stem: dict[str, Path] = {}
    for s in styles:
        why = not_readable(s)
        if why:
            raise ImageError(f"style {s}: {why}")
        if not looks_like_image(s):
            raise ImageError(f"style {s}: not an image (unrecognised or corrupt file)")
        if s.stem in by_stem and os.path.samefile(s, by_stem[s.stem]):
            raise ImageError(f"style {s}: given twice")
        if s.stem in by_stem:
            raise ImageError(f"styles {by_stem[s.stem]} and {s} share the name '{s.stem}', which names the "
                             "outputs: rename one")
        by_stem[s.stem] = s
    return list(styles)


def photo_labels(photos: list[Path]) -> dict[Path, str]:
    """The name part each photo contributes to its outputs: the stem, or name_ext on a clash."""
    stems: dict[tuple[Path, str], int] = {}
    for p in photos:
        stems[(p.parent, p.stem)] = stems.get((p.parent, p.stem), 0) + 1
    return {p: p.stem if stems[(p.parent, p.stem)] == 1 else p.name.replace(".", "_") for p in photos}


@dataclass
class Pair:
    photo: Path  # relative to the photo folder
    style: Path
    output: Path  # full path under the output folder


def output_format(fmt: str) -> str:
    """--format as a key of FORMATS ('JPEG' → 'jpg'), or one line saying what it takes."""
    name = FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise ImageError(f"bad --format '{fmt}': use {', '.join(FORMATS)}")
    return name


def plan_pairs(photos: list[Path], styles: list[Path], out_dir: Path, fmt: str) -> list[Pair]:
    """Every photo × every style, photo-major (a photo is read once for all its styles)."""
    fmt = output_format(fmt)
    labels = photo_labels(photos)
    pairs = [Pair(p, s, out_dir / p.parent / f"{labels[p]}__{s.stem}{FORMATS[fmt]}") for p in photos for s in styles]
    seen: dict[Path, Pair] = {}
    for pair in pairs:
        if pair.output in seen:
            raise ImageError(f"{seen[pair.output].photo} and {pair.photo} would both write {pair.output}: "
                             "rename one")
        seen[pair.output] = pair
    return pairs
