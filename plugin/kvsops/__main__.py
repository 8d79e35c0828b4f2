from kvsops.cli.main import main

raise SystemExit(main())
