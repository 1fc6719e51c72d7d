# CGRSeg-T: EfficientFormerV2-S1 backbone + CGRSeg head.
# Source: official CGRSeg config local_configs/cgrseg/cgrseg-t_ade20k_160k.py (head hyper-parameters;
# drop_path_rate 0.0 is the default of the official efficientformerv2_s1_feat). Registry names are
# ours (src/cgrseg/models). num_classes=150 is ADE20K; the data-set configs override it.
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    pretrained=None,
    backbone=dict(
        type='EfficientFormerV2', arch='s1', drop_path_rate=0.0, norm_cfg=norm_cfg,
        # ImageNet-1k weights, fetched by `cgrseg pretrained`
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/efficientformerv2_s1.pth')),
    decode_head=dict(
        type='CGRSegHead', in_channels=[48, 120, 224], in_index=[1, 2, 3], channels=128,
        next_repeat=5, dw_size=11, neck_size=11, square_kernel_size=3, ratio=1, mr=2,
        is_dw=True, module='RCA', dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
