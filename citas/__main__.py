from citas.cli import main

raise SystemExit(main())
