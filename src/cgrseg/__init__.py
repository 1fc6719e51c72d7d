"""cgrseg: reproduce CGRSeg (Ni et al., ECCV 2024) end to end.

Importing the package registers the CGRSeg backbone and decode head in mmseg's registries, so mmseg
configs can use them (``custom_imports = dict(imports=['cgrseg'])``). If mmseg is not imported yet,
registration happens the moment ``mmseg.models`` is — before any registry lookup can — so that the
data and table commands never pay for importing torch and mmseg.
"""
import importlib.abc
import sys

__version__ = '0.1.0'


class _RegisterAfterMMSeg(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Wraps the loader of ``mmseg.models`` to import ``cgrseg.models`` right after it runs."""

    def find_spec(self, name, path=None, target=None):
        if name != 'mmseg.models':
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, 'find_spec'):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    self._loader, spec.loader = spec.loader, self
                    return spec
        return None

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _leave_meta_path()
        from . import models  # noqa: F401


def _leave_meta_path():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterMMSeg)]


if 'mmseg.models' in sys.modules:
    from . import models  # noqa: F401
elif not any(isinstance(f, _RegisterAfterMMSeg) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterMMSeg())
