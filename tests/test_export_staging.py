"""Staging folders of killed exports are removed by the next export; a live export's folder is kept."""

import os
import subprocess
import sys
import time

from rubert_tf.export.staging import STALE_AFTER_SECONDS, _host_id, remove_stale_staging, staging_folder


def make(path, age_seconds=0):
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"partial")
    if age_seconds:
        old = time.time() - age_seconds
        for file in (os.path.join(path, "saved_model.pb"), path):
            os.utime(file, (old, old))
    return os.path.basename(path)


def test_only_dead_or_long_untouched_staging_folders_are_removed(tmp_path):
    base = str(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = _host_id()
    killed = make(os.path.join(base, f".tmp-3-{host}-{dead_pid}-0123abcd"))
    live = make(staging_folder(base, 4))  # this process: still exporting
    other_host_fresh = make(os.path.join(base, f".tmp-5-{'0' * 8 if host != '0' * 8 else '1' * 8}-1-0123abcd"))
    legacy_old = make(os.path.join(base, ".tmp-6-89abcdef"), age_seconds=STALE_AFTER_SECONDS + 60)
    legacy_fresh = make(os.path.join(base, ".tmp-7-89abcdef"))
    version = make(os.path.join(base, "2"))
    removed = remove_stale_staging(base)
    assert sorted(removed) == sorted([killed, legacy_old])
    assert sorted(os.listdir(base)) == sorted([live, other_host_fresh, legacy_fresh, version])
    assert remove_stale_staging(str(tmp_path / "missing")) == []
