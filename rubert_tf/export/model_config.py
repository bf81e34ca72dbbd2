"""`models.config` for serving several models: TF Serving's ModelServerConfig text proto."""

import os

from google.protobuf import text_format


def write_model_config(models, path, version_policy="latest", labels=None):
    """models: {name: base_path}. version_policy: "latest", "all", or a list of versions (specific).
    labels: optional {name: {label: version}} (e.g. {"sentiment": {"stable": 1, "canary": 2}})."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        entry = config.model_config_list.config.add(name=name, base_path=os.path.abspath(base_path),
                                                    model_platform="tensorflow")
        if version_policy == "all":
            entry.model_version_policy.all.SetInParent()
        elif version_policy == "latest":
            entry.model_version_policy.latest.num_versions = 1
        else:
            entry.model_version_policy.specific.versions.extend(int(v) for v in version_policy)
        for label, version in (labels or {}).get(name, {}).items():
            entry.version_labels[label] = int(version)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(config))
    return path
