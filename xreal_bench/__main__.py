from xreal_bench.cli import main

raise SystemExit(main())
