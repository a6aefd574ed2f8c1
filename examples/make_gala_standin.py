"""Write a stand-in for the "Gala" image data set, in the challenge's exact layout, from scikit-learn's digits.

The Hyperas article tunes a CNN on the HackerEarth deep-learning challenge "Gala": images of a festival sorted into
four classes (Attire, Decorationandsignage, Food, misc), given as a ``train.csv`` (columns ``Image,Class``) and a
folder ``Train Images/``. That data set cannot be downloaded here, so this script writes one in the same layout::

    <out>/
        train.csv              Image,Class
                               image0.png,Food
                               ...
        Train Images/
            image0.png         48x48 grayscale
            ...
        standin.json           how it was made (so a second run with the same options does nothing)

Each image is one of scikit-learn's bundled 8x8 handwritten digits 0-3 (one digit per class), upscaled to 48x48,
then shifted, rotated, blurred a little and overlaid with noise, so the task is not trivially solved by one pixel.
Everything is drawn from one seed: the same options always write the same files.

Usage::

    python examples/make_gala_standin.py --out examples/gala_data                  # 600 images
    python examples/make_gala_standin.py --out examples/gala_data --n-images 6000  # the challenge's size

``examples/gala_cnn.py --data <out>`` reads the result exactly as it would read the real data set.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from sklearn.datasets import load_digits

CLASSES = ("Attire", "Decorationandsignage", "Food", "misc")  # the challenge's class names
DIGIT_OF_CLASS = {"Attire": 0, "Decorationandsignage": 1, "Food": 2, "misc": 3}
IMAGE_SIZE = 48
IMAGE_FOLDER = "Train Images"  # the challenge's folder name, space included
MANIFEST = "standin.json"


def make_image(digit: np.ndarray, rng: np.random.Generator, noise: float) -> Image.Image:
    """One 48x48 grayscale image from an 8x8 digit (values 0..16), randomly moved and noised.

    >>> digit = load_digits().images[0]
    >>> image = make_image(digit, np.random.default_rng(0), noise=0.1)
    >>> image.size, image.mode
    ((48, 48), 'L')
    """
    small = Image.fromarray((digit / 16.0 * 255).astype(np.uint8), mode="L")
    # Upscale to a bit less than the frame so a shift keeps the digit inside it.
    inner = int(IMAGE_SIZE * 0.8)
    big = small.resize((inner, inner), Image.Resampling.BICUBIC)
    frame = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    margin = IMAGE_SIZE - inner
    dx, dy = rng.integers(0, margin + 1, size=2)
    frame.paste(big, (int(dx), int(dy)))
    frame = frame.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR)
    frame = frame.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 1.5))))
    pixels = np.asarray(frame, dtype=np.float32) / 255.0
    contrast = rng.uniform(0.5, 1.0)
    background = rng.uniform(0.0, 0.3)
    pixels = background + contrast * pixels + rng.normal(0.0, noise, size=pixels.shape)
    return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), mode="L")


def write_standin(out: Path, n_images: int = 600, seed: int = 0, noise: float = 0.15, force: bool = False) -> bool:
    """Write the stand-in data set into ``out``; returns False if it was already there with these options.

    ``n_images`` are spread evenly over the four classes. Refuses to write into a folder that holds a
    ``train.csv`` this script did not write (it may be the real data set) unless ``force``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_standin(Path(tmp), n_images=8), write_standin(Path(tmp), n_images=8)
    (True, False)
    """
    if n_images < len(CLASSES):
        raise ValueError(f"--n-images must be at least {len(CLASSES)} (one per class), got {n_images}")
    options = {"n_images": n_images, "seed": seed, "noise": noise, "size": IMAGE_SIZE, "classes": list(CLASSES)}
    manifest_path = out / MANIFEST
    csv_path = out / "train.csv"
    images = out / IMAGE_FOLDER
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if previous == options and _complete(csv_path, images):
            return False
    elif csv_path.exists() and not force:
        raise FileExistsError(
            f"{csv_path} exists but was not written by this script (no {MANIFEST}); it may be the real Gala data "
            "set. Choose another --out, or pass --force to overwrite it."
        )

    images.mkdir(parents=True, exist_ok=True)
    # Old images from a run with other options would otherwise linger in the folder, unlisted.
    for old in images.glob("image*.png"):
        old.unlink()

    digits = load_digits()
    rng = np.random.default_rng(seed)
    pools = {name: digits.images[digits.target == DIGIT_OF_CLASS[name]] for name in CLASSES}
    rows = []
    for number in range(n_images):
        name = CLASSES[number % len(CLASSES)]
        pool = pools[name]
        # Past the ~180 digits of a class, the same digit comes back, moved and noised differently.
        digit = pool[(number // len(CLASSES)) % len(pool)]
        filename = f"image{number}.png"
        make_image(digit, rng, noise).save(images / filename)
        rows.append((filename, name))
    # The challenge's csv is not grouped by class; shuffle the rows the same way every time.
    order = rng.permutation(len(rows))
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Image", "Class"])
        writer.writerows(rows[i] for i in order)
    manifest_path.write_text(json.dumps(options, indent=2) + "\n")
    return True


def _complete(csv_path: Path, images: Path) -> bool:
    if not csv_path.exists():
        return False
    with open(csv_path, newline="") as f:
        return all((images / row["Image"]).exists() for row in csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write train.csv and 'Train Images/' into")
    parser.add_argument("--n-images", type=int, default=600, help="number of images (default 600; the challenge had ~6,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0): same options, same files")
    parser.add_argument("--noise", type=float, default=0.15, help="standard deviation of the pixel noise (default 0.15)")
    parser.add_argument("--force", action="store_true", help="overwrite a train.csv this script did not write")
    args = parser.parse_args(argv)
    try:
        written = write_standin(args.out, args.n_images, args.seed, args.noise, args.force)
    except (ValueError, FileExistsError) as exc:
        parser.exit(2, f"make_gala_standin.py: error: {exc}\n")
    if written:
        print(f"Wrote {args.n_images} images of {', '.join(CLASSES)} to {args.out}/ (train.csv, {IMAGE_FOLDER}/)")
    else:
        print(f"{args.out}/ already holds the stand-in data set with these options; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
