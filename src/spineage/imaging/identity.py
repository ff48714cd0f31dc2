"""What a segmentation model is, not only where: the identity a spine-age network stores and the preprocess cache keys.

Kept apart from the preprocess stage so that the training stage, which stores the
identity with its network, does not depend on the imaging code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DEFAULT_SEGMENTATION_MODEL = "models/spine-seg"
"""The segment stage's model folder: ``preprocess.segmentation_model`` when params.yaml names none."""


def hash_inputs(image: str | Path, label: str | Path | None) -> str:
    """A short hash of the bytes of an image and its label map (a DICOM folder: every file, by relative path)."""
    digest = hashlib.sha256()
    for role, path in (("image", image), ("label", label)):
        digest.update(role.encode())
        if path is None or path == "":
            digest.update(b"<none>")
            continue
        path = Path(path)
        files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.is_file())
        if not path.exists():
            digest.update(b"<missing>")
        for file in files:
            digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            try:
                with file.open("rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
            except OSError:
                digest.update(b"<unreadable>")
    return digest.hexdigest()[:16]


def local_model_path(uri: str) -> Path | None:
    """The file or folder a segmentation model URI names on this machine, or None for a registry or remote URI."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    if "://" in uri or uri.startswith(("models:/", "runs:/")):
        return None
    return Path(uri)


SEGMENTER_IDENTITY_KEY = "segmentation_model_identity"
"""The key under which a spine-age network stores the identity of the segmenter its training arrays were masked with."""


def segmentation_model_identity(model: str) -> str:
    """What a segmentation model is, beyond where it is: a local file or folder with the hash of its bytes.

    ``models/spine-seg`` becomes ``models/spine-seg#sha256=<16 hex>`` (another model copied
    into the folder is another identity); a registry or remote URI, already pinned to a
    version, is its own identity; a local path that does not exist stays as written.

    Example:
        >>> segmentation_model_identity("models:/spine-seg-mri/3")
        'models:/spine-seg-mri/3'
    """
    local = local_model_path(model)
    if local is not None and local.exists():
        return f"{model}#sha256={hash_inputs(local, None)}"
    return model


def same_segmentation_model(identity: str, other: str) -> bool:
    """Whether two identities (:func:`segmentation_model_identity`) are one model: the same bytes, wherever the folder is.

    Example:
        >>> same_segmentation_model("models/spine-seg#sha256=ab12", "/repo/models/spine-seg#sha256=ab12")
        True
        >>> same_segmentation_model("models/spine-seg#sha256=ab12", "models/spine-seg#sha256=cd34")
        False
    """
    def fingerprint(text: str) -> str:
        return text.rpartition("#sha256=")[2] if "#sha256=" in text else text

    return fingerprint(identity) == fingerprint(other)
