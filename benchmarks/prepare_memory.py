"""Peak memory and wall time of `cgrseg prepare` at the real datasets' image counts.

Writes synthetic archives in the official formats with exactly the real train/val counts (ADE20K
20,210/2,000, COCO-Stuff-10k 9,000/1,000, Pascal Context 4,996/5,104; small 96-128 px images), then
prepares each in a child process and prints its peak RSS: the largest of the child's VmHWM and its
worker processes' (getrusage RUSAGE_CHILDREN), in MB. With --json-bytes it also pads the Pascal
Context annotation JSON to that size (the real trainval_merged.json has about 590 MiB) with more
annotations per image, part masks and test-phase images, as the real file has, and prepares again.

    .venv/bin/python benchmarks/prepare_memory.py [--scale 1] [--jobs 2] [--json-bytes 620000000]
        [--datasets ade20k coco_stuff10k pascal_context] [--work DIR] [--src DIR]

--scale multiplies the counts (0.1 for a quick look); --src runs another checkout's src/ (to
compare with the code before a change, interleaved on the same machine).
"""
import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_COUNTS = {'ade20k': {'train': 20210, 'val': 2000},
               'coco_stuff10k': {'train': 9000, 'val': 1000},
               'pascal_context': {'train': 4996, 'val': 5104}}
TEST_IMAGES = 4188   # trainval_merged.json also lists VOC2010's test images (phase "test")


def measured(argv):
    """Run in the child: ``cgrseg ARGV``, then print the peak RSS in kB on stderr."""
    from cgrseg.cli import main
    code = main(argv)
    own = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')]
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f'PEAK_KB {max(int(own[0].split()[1]), workers)}', file=sys.stderr)
    return code


def prepare(dataset, raw, out, jobs, src):
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
               TQDM_DISABLE='1')
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, '--measure', 'prepare', dataset, '--raw',
                           str(raw), '--out', str(out), '--jobs', str(jobs)],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith('PEAK_KB')]
    if proc.returncode or not peak:
        sys.exit(f'prepare {dataset} failed:\n{proc.stderr[-3000:]}')
    return peak[0] / 1024, wall


def synthesize(dataset, raw, counts):
    from cgrseg.data.prepare import module
    raw.mkdir(parents=True, exist_ok=True)
    module(dataset).synthesize(raw, counts, 0)


def pad_detail_json(path, target, seed=0):
    """Grow trainval_merged.json to ``target`` bytes the way the real file is large (written as a
    stream: never whole in memory here either): more annotations per image (copies of its masks
    under other classes of the 59, each with part masks) and the test-phase images, listed with
    annotations of their own."""
    from cgrseg.data.labels import PASCAL_CONTEXT_59_IDS
    rng = random.Random(seed)
    doc = json.loads(path.read_text())
    anns = doc.pop('annos_segmentation')
    by_image = {}
    for ann in anns:
        by_image.setdefault(ann['image_id'], []).append(ann)
    test = [dict(img, image_id=9_000_000 + i, file_name=f'2011_{i:06d}.jpg', phase='test')
            for i, img in enumerate(doc['images'][:TEST_IMAGES])]
    for image, original in zip(test, doc['images']):
        anns += [dict(a, image_id=image['image_id']) for a in by_image.get(original['image_id'], [])]
    doc['images'] += test
    images, next_id = list(by_image), max(a['id'] for a in anns) + 1
    with open(path, 'w') as f:
        f.write(json.dumps(doc)[:-1] + ', "annos_segmentation": [')
        f.write(', '.join(json.dumps(a) for a in anns))
        while f.tell() < target - 2:
            ann = dict(rng.choice(by_image[rng.choice(images)]), id=next_id,
                       category_id=rng.choice(PASCAL_CONTEXT_59_IDS))
            ann['parts'] = [{'part_id': k, 'segmentation': ann['segmentation']}
                            for k in range(rng.randrange(8))]
            f.write(', ' + json.dumps(ann))
            next_id += 1
        f.write(']}')
    return next_id


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--datasets', nargs='+', default=list(REAL_COUNTS))
    parser.add_argument('--scale', type=float, default=1.0)
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--json-bytes', type=int, default=0,
                        help='also prepare Pascal Context with its JSON padded to this size')
    parser.add_argument('--work', type=Path, help='keep the archives here (default: a temporary folder)')
    parser.add_argument('--src', type=Path, default=REPO / 'src', help='the cgrseg sources to run')
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix='prepare_memory.'))
    print(f'{"dataset":<16}{"train":>7}{"val":>7}{"archives MB":>13}{"peak RSS MB":>13}{"wall s":>9}')
    try:
        for dataset in args.datasets:
            counts = {k: max(1, round(v * args.scale)) for k, v in REAL_COUNTS[dataset].items()}
            raw = work / dataset / 'raw'
            if not raw.is_dir():
                synthesize(dataset, raw, counts)
            runs = [('', raw)]
            if dataset == 'pascal_context' and args.json_bytes:
                big = work / dataset / 'raw-big-json'
                if not big.is_dir():
                    shutil.copytree(raw, big)
                    pad_detail_json(big / 'trainval_merged.json', args.json_bytes)
                runs.append((' (big JSON)', big))
            for label, folder in runs:
                peak, wall = prepare(dataset, folder, work / dataset / 'out', args.jobs, args.src)
                size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
                print(f'{dataset + label:<16}{counts["train"]:>7}{counts["val"]:>7}{size:>13.0f}'
                      f'{peak:>13.0f}{wall:>9.1f}', flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    if sys.argv[1:2] == ['--measure']:
        sys.exit(measured(sys.argv[2:]))
    main()
