"""``python -m livestream.cli ...``: the ``livestream`` command."""

from . import main

if __name__ == "__main__":
    main()
