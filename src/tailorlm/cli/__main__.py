"""``python -m tailorlm.cli``: the same command line as the ``tailorlm`` script."""

from tailorlm.cli import app

if __name__ == "__main__":  # pragma: no cover
    app()
