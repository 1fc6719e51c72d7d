"""What an evaluation records about its inputs: code version, files, packages, device."""
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

from cgrseg.io import sha256_file  # noqa: F401  (part of this module's API)

PACKAGES = {'torch': 'torch', 'mmcv': 'mmcv-full', 'mmseg': 'mmsegmentation'}


def sha256_text(text):
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit(cwd=None):
    """HEAD of the git checkout holding the cgrseg code (or ``cwd``); None outside git."""
    if cwd is None:
        cwd = Path(__file__).resolve().parent
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=cwd, capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def package_versions():
    versions = {}
    for name, dist in PACKAGES.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_name(device):
    """``cpu`` or ``cuda:0 (<GPU name>)``."""
    if device == 'cpu':
        return 'cpu'
    import torch
    return f'{device} ({torch.cuda.get_device_name(torch.device(device))})'


def provenance(config, checkpoint, resolved_config, device, manifest=None):
    return {
        'git_commit': git_commit(),
        'config': str(config),
        'config_sha256': sha256_file(config),
        # the file's hash does not cover its _base_ files or command-line overrides; this one does
        'resolved_config_sha256': sha256_text(resolved_config),
        'checkpoint': str(checkpoint),
        'packages': package_versions(),
        'device': device_name(device),
        'dataset_manifest_sha256': sha256_file(manifest) if manifest else None,
    }
