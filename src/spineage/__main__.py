"""``python -m spineage``: the command line (what ``torchrun -m spineage`` and ``--nproc`` start)."""

from spineage.cli import app

if __name__ == "__main__":
    app(prog_name="spineage")
