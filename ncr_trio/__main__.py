from ncr_trio.cli import main

raise SystemExit(main())
