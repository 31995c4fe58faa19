"""``python -m onnxvis`` runs the CLI."""

from onnxvis.cli import main

raise SystemExit(main())
