# CGRSeg-B: EfficientFormerV2-S2 backbone + CGRSeg head.
# Source: official CGRSeg config local_configs/cgrseg/cgrseg-b_ade20k_160k.py (head hyper-parameters;
# drop_path_rate 0.02 is the default of the official efficientformerv2_s2_feat). Registry names are
# ours (src/cgrseg/models). num_classes=150 is ADE20K; the data-set configs override it.
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    pretrained=None,
    backbone=dict(
        type='EfficientFormerV2', arch='s2', drop_path_rate=0.02, norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/efficientformerv2_s2.pth')),
    decode_head=dict(
        type='CGRSegHead', in_channels=[64, 144, 288], in_index=[1, 2, 3], channels=256,
        next_repeat=6, dw_size=11, neck_size=11, square_kernel_size=3, ratio=1, mr=2,
        is_dw=True, module='RCA', dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
