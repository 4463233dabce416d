"""``python -m pyworkflowy_nb``: the engine demo."""

from ._demo import main

raise SystemExit(main())
