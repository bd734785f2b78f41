"""``python -m se_monai.cli``: the ``se-monai`` command."""

from se_monai.cli import main

main()
