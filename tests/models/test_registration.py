"""Registration follows mmseg's convention: configs name `cgrseg.models` in `custom_imports`."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(code):
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_import_cgrseg_is_light():
    out = run('import sys, cgrseg, cgrseg.cli, cgrseg.tables.cli, cgrseg.data.cli; '
              'print("torch" in sys.modules, "mmseg" in sys.modules, "mmcv" in sys.modules)')
    assert out == ['False', 'False', 'False']


def test_importing_cgrseg_models_registers_it():
    out = run('from mmseg.models.builder import BACKBONES, HEADS; '
              'print("EfficientFormerV2" in BACKBONES.module_dict, "CGRSeg" in HEADS.module_dict); '
              'import cgrseg.models; '
              'print("EfficientFormerV2" in BACKBONES.module_dict, "CGRSegHead" in HEADS.module_dict, '
              '"CGRSeg" in HEADS.module_dict)')
    assert out == ['False', 'False', 'True', 'True', 'True']


def test_config_custom_imports_build_the_model():
    out = run('from mmcv import Config; from mmseg.models import build_segmentor; '
              'cfg = Config.fromfile("configs/cgrseg/cgrseg-t_ade20k_160k.py"); '
              'print(type(build_segmentor(cfg.model).decode_head).__name__)')
    assert out[-1] == 'CGRSegHead'
