"""Where recording files go: the storage named ``recordings`` in ``settings.STORAGES``.

A local directory (``RECORDINGS_DIR``, default ``var/recordings``) unless ``RECORDINGS_S3_BUCKET`` is set:
then S3 or any S3-compatible store (MinIO, Ceph, R2...) through django-storages' ``S3Storage`` (boto3),
private objects, never overwritten, downloads served through this app (not public URLs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.files.storage import Storage, storages

STORAGE_ALIAS = "recordings"
S3_BACKEND = "storages.backends.s3.S3Storage"
FILESYSTEM_BACKEND = "django.core.files.storage.FileSystemStorage"


def storage_settings(env: Mapping[str, str], *, default_dir: str) -> dict[str, Any]:
    """The ``STORAGES["recordings"]`` entry from the environment (read by the settings module)."""
    bucket = env.get("RECORDINGS_S3_BUCKET", "").strip()
    if not bucket:
        return {
            "BACKEND": FILESYSTEM_BACKEND,
            # Not under MEDIA_URL: files are only ever served through the access-checked download.
            "OPTIONS": {"location": env.get("RECORDINGS_DIR", "").strip() or default_dir, "base_url": None},
        }
    options: dict[str, Any] = {
        "bucket_name": bucket,
        "default_acl": None,  # the bucket's own policy (private); no public-read objects
        "file_overwrite": False,
        "querystring_auth": True,
        "location": env.get("RECORDINGS_S3_PREFIX", "recordings").strip().strip("/"),
    }
    for key, option in (
        ("RECORDINGS_S3_ENDPOINT_URL", "endpoint_url"),
        ("RECORDINGS_S3_REGION", "region_name"),
        ("RECORDINGS_S3_ACCESS_KEY_ID", "access_key"),
        ("RECORDINGS_S3_SECRET_ACCESS_KEY", "secret_key"),
    ):
        value = env.get(key, "").strip()
        if value:  # else boto3's own chain (instance role, AWS_* variables, ~/.aws)
            options[option] = value
    return {"BACKEND": S3_BACKEND, "OPTIONS": options}


def recordings_storage() -> Storage:
    return storages[STORAGE_ALIAS]
