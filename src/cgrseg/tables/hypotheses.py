"""``configs/paper/hypotheses.yaml``: named config changes that may explain a paper cell.

Each hypothesis names a variant, mmcv ``--cfg-options`` and the columns it should explain; the DAG
measures it on the judged model and the diff shows it beside every OUTSIDE cell it names.
"""
import re

from cgrseg.errors import CGRSegError
from cgrseg.io import load_yaml
from cgrseg.layout import HYPOTHESES, HYPOTHESIS_FLOPS, VARIANTS, result_path
EXPLAINABLE = ('params_M', 'gflops')  # what a flops measurement can explain
_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]*')
_OPTION = re.compile(r'[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*')


def load_hypotheses(path=HYPOTHESES):
    """{name: hypothesis}, checked; an empty or absent ``hypotheses`` mapping means none."""
    doc = load_yaml(path, 'hypotheses')
    hypotheses = doc.get('hypotheses') or {}
    if not isinstance(hypotheses, dict):
        raise CGRSegError(f'{path}: "hypotheses" must be a mapping of name -> hypothesis')
    for name, hyp in hypotheses.items():
        problem = _problem(name, hyp)
        if problem:
            raise CGRSegError(f'{path}: hypotheses.{name}: {problem}')
    return hypotheses


def _problem(name, hyp):
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return 'the name must be letters, digits, "_" and "-"'
    if not isinstance(hyp, dict):
        return 'must be a mapping with variant, cfg_options, explains, source'
    if hyp.get('variant') not in VARIANTS:
        return f'variant must be one of {", ".join(VARIANTS)}, got {hyp.get("variant")!r}'
    options = hyp.get('cfg_options')
    if not isinstance(options, dict) or not options:
        return 'cfg_options must be a non-empty mapping of dotted config keys to values'
    bad = [k for k in options if not isinstance(k, str) or not _OPTION.fullmatch(k)]
    if bad:
        return f'cfg_options keys must be dotted config keys, got {bad[0]!r}'
    explains = hyp.get('explains')
    if (not isinstance(explains, list) or not explains
            or not all(isinstance(c, str) and c in EXPLAINABLE for c in explains)):
        return f'explains must be a non-empty list drawn from {", ".join(EXPLAINABLE)}'
    if not isinstance(hyp.get('source'), str) or not hyp['source'].strip():
        return 'source must say where the idea comes from'
    return None


def measurement_path(results, name):
    return result_path(results, HYPOTHESIS_FLOPS, hypothesis=name)
