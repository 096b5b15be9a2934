"""agentledger: cost attribution and cost control for AI agents in production.

The contract lives in :mod:`agentledger.events`; topic names in :mod:`agentledger.topics`.
The tiny client is :mod:`agentledger.collectors`.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"
__all__ = ["__version__"]

# The repository keeps each layer in a top-level folder (collectors/, streams/, ...) that is
# installed as agentledger.<layer>. When Python imports from a source checkout (the repo root
# on sys.path, e.g. `python -c` or pytest from the root), let agentledger.<layer> resolve to
# those folders too. In an installed wheel the layers sit inside this package and the check
# below finds nothing to add.
_root = _Path(__file__).resolve().parent.parent
if (_root / "collectors" / "__init__.py").exists() and (_root / "pyproject.toml").exists():
    __path__.append(str(_root))
