"""``cgrseg evaluate``: mIoU of a checkpoint on its config's test set -> metrics.json.

Two protocols (cgrseg.runner.protocols): the data set's official one (the config's test pipeline,
as the authors' configs set it) gives the top-level numbers, and single scale is recorded beside
it; a data set whose official protocol is single scale is evaluated once. mmseg computes the
metric (``single_gpu_test(pre_eval=True)`` + ``dataset.evaluate``); this command only chooses the
test pipelines and writes the result file of docs/results-schema.md.
"""
import math
from pathlib import Path

from cgrseg import ranges as R
from cgrseg.mmseg_config import EVALUATE
from cgrseg.cli import optional, yes_no
from cgrseg.errors import CGRSegError
from cgrseg.io import check_output_file, read_json, write_json
from cgrseg.runner import protocols as P
from cgrseg.runner.checkpoints import completed_iters


def add_parser(subparsers):
    p = subparsers.add_parser('evaluate', help='mIoU of a trained checkpoint -> metrics.json',
                              description=__doc__.splitlines()[0])
    p.add_argument('config', help='the mmseg config the checkpoint was trained with')
    p.add_argument('checkpoint', help='e.g. work_dirs/ade20k/cgrseg-t/latest.pth')
    p.add_argument('--out', required=True, help='metrics.json to write')
    p.add_argument('--data-root', help="prepared data directory, replacing the configs' data/prepared")
    p.add_argument('--crop', type=optional(R.option(R.SIDE)), metavar='SIZE|none',
                   help='scale the test resize as `cgrseg train --crop` does '
                        '(default, none: the crop recorded in the checkpoint, if training changed it)')
    p.add_argument('--demo', type=yes_no, nargs='?', const=True, default=False, metavar='true|false',
                   help='mark the result as demo; implied by synthetic data (--manifest), a training '
                        'crop or fewer iterations than the config')
    p.add_argument('--manifest', help="the prepared data set's manifest; its sha256 is recorded")
    p.add_argument('--workers', type=R.option(R.WORKERS), default=2, help='data-loader workers (default: 2)')
    p.set_defaults(func=run)
    return p


def _device():
    """The first GPU when there is one (mmcv's data-parallel wrapper insists on it), else the CPU."""
    import torch
    return 'cuda:0' if torch.cuda.is_available() else 'cpu'


def load_model(cfg, checkpoint_path):
    """The segmentor with the checkpoint's weights, on the CPU, and the checkpoint's meta.

    Strict loading: a checkpoint of another variant or class count fails instead of evaluating
    a half-initialised model.
    """
    from mmcv.runner import load_state_dict
    from cgrseg.models.build import build_model
    from cgrseg.runner.checkpoints import load
    model = build_model(cfg)
    ckpt = load(checkpoint_path)  # empty, truncated or foreign files: one line
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in ckpt['state_dict'].items()}
    try:
        load_state_dict(model, state, strict=True)
    except Exception as err:
        raise CGRSegError(f'{checkpoint_path}: cannot load it into the config\'s model: '
                       f'{str(err).strip().splitlines()[-1]}') from None
    return model.eval(), _checked_meta(ckpt.get('meta') or {}, checkpoint_path)


def _checked_meta(meta, path):
    """The parts of a checkpoint's meta that evaluation reads, checked (a checkpoint is untrusted)."""
    trained = meta.get('cgrseg')
    crop = trained.get('crop') if isinstance(trained, dict) else None
    if trained is not None and not isinstance(trained, dict) or \
            crop is not None and type(crop) is not int:
        raise CGRSegError(f'{path}: meta["cgrseg"] is not the training record of cgrseg train')
    if 'iter' in meta and (type(meta['iter']) is not int or meta['iter'] < 0):
        raise CGRSegError(f'{path}: meta["iter"] is not an iteration count ({meta["iter"]!r:.40})')
    return meta


def metrics_from(eval_results):
    """mmseg's fractions -> the schema's percentages; per-class IoU by name, None where undefined."""
    def pct(value):
        value = float(value)
        return None if math.isnan(value) else round(value * 100, 2)

    per_class = {key[len('IoU.'):].strip(): pct(value)
                 for key, value in eval_results.items() if key.startswith('IoU.')}
    return {'mIoU': pct(eval_results['mIoU']), 'mAcc': pct(eval_results['mAcc']),
            'aAcc': pct(eval_results['aAcc']), 'per_class_iou': per_class}


def read_manifest(path):
    """The prepared data set's manifest (``cgrseg prepare``), or None without one."""
    if path is None:
        return None
    manifest = read_json(path, 'data set manifest')
    if not isinstance(manifest, dict):
        raise CGRSegError(f'{path}: the data set manifest must be a JSON object, '
                          f'not {type(manifest).__name__}')
    return manifest


def is_demo(flag, manifest, meta, config_iters):
    """Never let a number be compared with the paper when its data or schedule were not the paper's:
    --demo, synthetic data (manifest), a crop changed at training, or fewer iterations than the config.
    """
    trained = meta.get('cgrseg') or {}
    done = completed_iters(meta['iter']) if 'iter' in meta else None
    return bool(flag or (manifest or {}).get('synthetic') or trained.get('crop') is not None
                or (done is not None and done < config_iters))


def _check_inputs(args):
    check_output_file(args.out, [args.config, args.checkpoint, args.manifest])
    for label, path in (('checkpoint', args.checkpoint), ('manifest', args.manifest)):
        if path is not None and not Path(path).is_file():
            raise CGRSegError(f'{path}: no such {label} file')
    if Path(args.checkpoint).stat().st_size == 0:
        raise CGRSegError(f'{args.checkpoint}: cannot read checkpoint: the file is empty')


def _test_config(original, args, meta):
    """A copy of the config with the official test pipeline, moved to the data root and the
    training crop."""
    import copy
    from cgrseg.runner import config_rewrites as C
    crop = args.crop if args.crop is not None else (meta.get('cgrseg') or {}).get('crop')
    cfg = C.rewrite(copy.deepcopy(original), data_root=args.data_root, crop=crop)
    C.drop_pretrained(cfg)  # the checkpoint supplies every weight
    cfg.data.test.test_mode = True
    return cfg


def predict_and_score(cfg, model, device, workers):
    """mmseg's own test loop and metric: ``single_gpu_test(pre_eval=True)`` + ``dataset.evaluate``."""
    import torch
    from mmcv.parallel import MMDataParallel
    from mmseg.apis import single_gpu_test
    from mmseg.datasets import build_dataloader, build_dataset
    dataset = build_dataset(cfg.data.test)
    if len(dataset) == 0:
        raise CGRSegError(f'the test set under {cfg.data.test.data_root} has no images')
    loader = build_dataloader(dataset, samples_per_gpu=1, workers_per_gpu=workers, dist=False,
                              shuffle=False, persistent_workers=False)
    model.CLASSES = dataset.CLASSES
    wrapped = MMDataParallel(model.to(device), device_ids=[0])  # no GPU: runs on the CPU
    with torch.no_grad():
        results = single_gpu_test(wrapped, loader, pre_eval=True)
    return dataset.evaluate(results, metric='mIoU')


def evaluate_protocols(cfg, model, device, workers):
    """{protocol name: description + metrics} for the official protocol and single scale."""
    done = {}
    for name, pcfg in P.protocol_configs(cfg).items():
        about = P.describe(cfg if name == P.OFFICIAL else pcfg, name)
        same = next((d for d in done.values() if P.same_protocol(d, about)), None)
        scores = {k: same[k] for k in METRICS} if same else \
            metrics_from(predict_and_score(pcfg, model, device, workers))
        done[name] = {**about, **scores}
    return done


METRICS = ('mIoU', 'mAcc', 'aAcc', 'per_class_iou')


def run(args):
    from cgrseg.runner import config_rewrites as C
    from cgrseg.runner.provenance import provenance
    _check_inputs(args)
    manifest = read_manifest(args.manifest)
    original = C.load_config(args.config, needs=EVALUATE)
    exp = C.experiment(original, args.config)
    device = _device()
    model, meta = load_model(original, args.checkpoint)
    cfg = _test_config(original, args, meta)
    C.check_data(cfg, ('test',))
    protocols = evaluate_protocols(cfg, model, device, args.workers)
    official = protocols[P.OFFICIAL]
    doc = {'model': exp['model'], 'variant': exp['variant'], 'dataset': exp['dataset'],
           'mode': official['mode'],
           'protocol': {k: v for k, v in official.items() if k not in METRICS},
           **{k: official[k] for k in METRICS},
           'protocols': protocols,
           'demo': is_demo(args.demo, manifest, meta, original.runner['max_iters']),
           'iters': completed_iters(meta['iter']) if 'iter' in meta else None,
           'provenance': provenance(args.config, args.checkpoint, C.resolved_text(cfg), device,
                                    manifest=args.manifest)}
    write_json(args.out, doc)
    single = protocols[P.SINGLE_SCALE]
    print(f"{exp['model']} {exp['dataset']}: mIoU {doc['mIoU']} ({official['description']}; official), "
          f"{single['mIoU']} (single scale) -> {args.out}")
    return 0
