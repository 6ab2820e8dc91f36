"""The one build step pyproject.toml cannot declare: putting ``alignlab_lm_eval_hook.pth`` in site-packages.

Everything else about the package is in pyproject.toml. The ``.pth`` file holds one line,
``import alignlab_lm_eval_hook``, which Python runs at start-up; that module only adds an import hook, so that
``lm_eval --model alignlab`` finds alignlab's model (see alignlab_lm_eval_hook.py). A regular build writes the
file into the wheel's root (``build_py``); an editable install (``pip install -e .``, as ``make`` does) writes it
into the editable wheel beside setuptools' own ``__editable__.alignlab-*.pth``, whose finder (processed first:
``site`` reads ``.pth`` files in sorted name order) makes the hook module importable from the checkout.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "alignlab_lm_eval_hook.pth"
# A guarded import: if the module cannot be found (an editable checkout moved or deleted), start-up stays silent.
PTH_LINE = ("import importlib.util; importlib.util.find_spec('alignlab_lm_eval_hook') is not None "
            "and __import__('alignlab_lm_eval_hook')\n")


class BuildPyWithHook(build_py):
    """``build_py`` that also writes the ``.pth`` file into the build tree (so into the wheel's root)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            Path(self.build_lib, PTH_NAME).write_text(PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, str(Path(self.build_lib, PTH_NAME))]


class _AddHookPth:
    """Wraps setuptools' editable strategy (a context manager called with the wheel) to add the ``.pth``."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.strategy.__exit__(*exc_info)

    def __call__(self, wheel, files, mapping) -> None:
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH_NAME, PTH_LINE)


class EditableWheelWithHook(editable_wheel):
    """``editable_wheel`` whose wheel carries the ``.pth`` file too (setuptools >= 64's PEP 660 editable mode)."""

    def _select_strategy(self, name, tag, build_lib):
        return _AddHookPth(super()._select_strategy(name, tag, build_lib))


setup(cmdclass={"build_py": BuildPyWithHook, "editable_wheel": EditableWheelWithHook})
