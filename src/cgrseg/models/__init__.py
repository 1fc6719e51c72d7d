"""CGRSeg model parts, registered in mmseg's registries on import.

Registry names: ``EfficientFormerV2`` (backbone, ``arch='s1'|'s2'|'l'``) and ``CGRSegHead``; the
official names ``efficientformerv2_{s0,s1,s2,l}_feat`` and ``CGRSeg`` are registered too so the
authors' configs run unchanged. Importing it also makes every checkpoint mmcv loads for a model
(``init_cfg=dict(type='Pretrained')``, ``load_from``, ``resume_from``) a weights-only read
(``cgrseg.runner.checkpoints.route_mmcv_loading``): checkpoints are data, never code.
"""

from mmseg.models.builder import BACKBONES, HEADS

from cgrseg.runner.checkpoints import route_mmcv_loading

from .cgrseg_head import CGRSegHead
from .efficientformer_v2 import ARCHS, EfficientFormerV2
from .rca import RCA
from .rcm import RCM
from .pyramid_pool_agg import PyramidPoolAgg
from .dpg_head import DPGHead

__all__ = ['EfficientFormerV2', 'CGRSegHead', 'RCA', 'RCM', 'PyramidPoolAgg', 'DPGHead']

def _official_backbone(arch):
    def build(style=None, **kwargs):  # `style` is an unused key of the official configs
        return EfficientFormerV2(arch=arch, **kwargs)
    build.__name__ = f'efficientformerv2_{arch}_feat'
    return build

def _register():
    route_mmcv_loading()
    if 'EfficientFormerV2' in BACKBONES.module_dict:
        return
    BACKBONES.register_module(module=EfficientFormerV2)
    HEADS.register_module(module=CGRSegHead)
    HEADS.register_module(name='CGRSeg', module=CGRSegHead)
    for arch in ARCHS:
        BACKBONES.register_module(name=f'efficientformerv2_{arch}_feat', module=_official_backbone(arch))

_register()
