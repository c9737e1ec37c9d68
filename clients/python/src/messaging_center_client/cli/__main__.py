"""`python -m messaging_center_client.cli`: the same as `mc`."""

from messaging_center_client.cli import main

raise SystemExit(main())
