"""`import cgrseg` registers the model in mmseg, without importing torch for light commands."""
import subprocess
import sys


def run(code):
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_cgrseg_first_then_mmseg():
    out = run('import sys, cgrseg; print("torch" in sys.modules); '
              'from mmseg.models.builder import BACKBONES, HEADS; '
              'print("EfficientFormerV2" in BACKBONES.module_dict, "CGRSegHead" in HEADS.module_dict)')
    assert out == ['False', 'True', 'True']


def test_mmseg_first_then_cgrseg():
    out = run('import mmseg.models; from mmseg.models.builder import HEADS; print("CGRSeg" in HEADS.module_dict); '
              'import cgrseg; print("CGRSeg" in HEADS.module_dict)')
    assert out == ['False', 'True']


def test_config_custom_imports_build_the_model():
    out = run('from mmcv import Config; from mmseg.models import build_segmentor; '
              'cfg = Config.fromfile("configs/cgrseg/cgrseg-t_ade20k_160k.py"); '
              'print(type(build_segmentor(cfg.model).decode_head).__name__)')
    assert out[-1] == 'CGRSegHead'
