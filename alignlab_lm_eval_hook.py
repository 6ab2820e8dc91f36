"""Makes ``lm_eval --model alignlab`` work once alignlab is installed, at no cost to other Python processes.

lm-evaluation-harness 0.4.13 finds models only in its registry, which its own ``lm_eval/models/__init__.py``
fills with lazy ``"module:Class"`` placeholders; it reads no entry points. alignlab's install puts
``alignlab_lm_eval_hook.pth`` (one line, ``import alignlab_lm_eval_hook``) in site-packages, and Python runs that
line at start-up. This module then only adds :class:`LmEvalModelsHook` to ``sys.meta_path``: it imports nothing
else, so alignlab, torch and lm-eval stay unloaded in every process that does not use lm-eval. When a process
imports ``lm_eval.models`` (lm-eval's ``get_model`` does before it looks a name up), the hook lets that module
run and then adds one more placeholder, ``alignlab -> alignlab.evaluate.harness:HarnessLM``; lm-eval imports
alignlab only when ``--model alignlab`` is asked for.

The hook is a top-level module, not part of the ``alignlab`` package, because importing ``alignlab.*`` would
import ``alignlab/__init__.py`` at every start-up.

Example (what the ``.pth`` line does, then what lm-eval does)::

    >>> import alignlab_lm_eval_hook, sys
    >>> any(isinstance(f, alignlab_lm_eval_hook.LmEvalModelsHook) for f in sys.meta_path)
    True
    >>> from lm_eval.api.registry import get_model                                    # doctest: +SKIP
    >>> get_model("alignlab").__name__                                                 # doctest: +SKIP
    'HarnessLM'
"""

from __future__ import annotations

import sys

MODEL_NAME = "alignlab"
MODEL_TARGET = "alignlab.evaluate.harness:HarnessLM"
WATCHED_MODULE = "lm_eval.models"


def register_model_placeholder() -> None:
    """Add the lazy ``alignlab`` entry to lm-eval's model registry unless a model of that name is there already
    (``alignlab.evaluate.harness`` registers the class itself when it is imported first)."""
    try:  # another lm-eval version may lay its registry out differently: then lm-eval runs without alignlab's alias
        from lm_eval.api.registry import model_registry

        if MODEL_NAME not in model_registry:
            model_registry.register(MODEL_NAME, target=MODEL_TARGET)
    except Exception:  # noqa: BLE001 — a hook that ran at start-up must never break the import of lm-eval itself
        return


class _RegisterAfterLoad:
    """A loader that runs the real loader of ``lm_eval.models``, then registers the placeholder."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        register_model_placeholder()

    def __getattr__(self, name):  # get_code, get_source, is_package, ... of the real loader
        return getattr(self.loader, name)


class LmEvalModelsHook:
    """A ``sys.meta_path`` finder that answers only for ``lm_eval.models``: it asks the finders after it for
    the real module spec and wraps that spec's loader in :class:`_RegisterAfterLoad`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != WATCHED_MODULE:
            return None
        later = sys.meta_path[sys.meta_path.index(self) + 1 :] if self in sys.meta_path else sys.meta_path
        for finder in later:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None and spec.loader is not None:
                spec.loader = _RegisterAfterLoad(spec.loader)
                return spec
        return None


def install() -> None:
    """Put the hook first on ``sys.meta_path`` once; if ``lm_eval.models`` is loaded already, register now."""
    if not any(isinstance(f, LmEvalModelsHook) for f in sys.meta_path):
        sys.meta_path.insert(0, LmEvalModelsHook())
    if WATCHED_MODULE in sys.modules:
        register_model_placeholder()


install()
