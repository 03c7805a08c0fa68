"""Sphinx configuration of the sklearn_useg documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html``. The gallery runs the
examples in ``examples/``; they read the checkpoint and the datasets from the folders
named by ``SKLEARN_USEG_WEIGHTS`` and ``SKLEARN_USEG_DATA`` (see the user guide).
"""

import os
import warnings

import sklearn_useg

project = "sklearn_useg"
author = "sklearn_useg developers"
copyright = "sklearn_useg developers"
release = sklearn_useg.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",  # docs/benchmarks.md, written by the quality benchmark
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.json",
                    "**.ipynb_checkpoints"]
root_doc = "index"

# API reference: one page per public name, generated from the docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
default_role = "py:obj"

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_useg {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
html_show_sourcelink = False

# The examples run on the CPU with one thread each (the build machines are small).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=UserWarning,
                        message="Matplotlib is currently using agg")

# torch_geometric's import emits this; it is not about the examples' code.
warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.script.*")


def _skip_metadata_routing(app, what, name, obj, skip, options):
    """Leave scikit-learn's generated ``set_*_request`` methods out of the API pages."""
    if name == "get_metadata_routing" or (name.startswith("set_")
                                          and name.endswith("_request")):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_routing)


sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "doc_module": ("sklearn_useg",),
    "reference_url": {"sklearn_useg": None},
    "backreferences_dir": "gen_modules/backreferences",
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "show_memory": False,
    "min_reported_time": 1,
    "write_computation_times": False,  # no generated sg_execution_times.rst files
}
