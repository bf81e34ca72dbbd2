"""Staging folders of exports: `.tmp-<version>-<host>-<pid>-<random>` next to the versions (not an
integer, so servers skip them), renamed into place when complete. A killed export leaves its folder
behind; the next export removes such leftovers, never the folder of an export still running."""

import hashlib
import logging
import os
import re
import shutil
import socket
import time
import uuid

logger = logging.getLogger(__name__)

_NAME = re.compile(r"\.tmp-(\d+)-([0-9a-f]{8})-(\d+)-[0-9a-f]{8}")
_LEGACY = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}")  # before the owner was in the name
# A folder of another machine (a shared disk) or of the old naming is stale only when no export could
# still be writing it: untouched for this long.
STALE_AFTER_SECONDS = 24 * 3600


def _host_id():
    return hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:8]


def staging_folder(base_path, version):
    return os.path.join(base_path, f".tmp-{version}-{_host_id()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _untouched_for(path):
    newest = os.path.getmtime(path)
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                newest = max(newest, os.path.getmtime(os.path.join(root, name)))
            except OSError:
                pass
    return time.time() - newest


def remove_stale_staging(base_path):
    """Delete the staging folders under `base_path` left by exports that died; returns their names."""
    removed = []
    try:
        names = os.listdir(base_path)
    except FileNotFoundError:
        return removed
    host = _host_id()
    for name in names:
        path = os.path.join(base_path, name)
        match = _NAME.fullmatch(name)
        if match and match.group(2) == host:
            stale = not _alive(int(match.group(3)))
        elif match or _LEGACY.fullmatch(name):
            stale = _untouched_for(path) > STALE_AFTER_SECONDS
        else:
            continue
        if stale and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
            logger.warning("%s: removed %s, the staging folder of an export that did not finish", base_path, name)
    return removed
